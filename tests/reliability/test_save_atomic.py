"""Saving a model file as a careful editor saves: atomically, keeping the mode, following links.

A save writes a temporary file beside its target and renames it over the target. These tests
check what a user sees of that: errors name the path asked for, an existing file keeps its
permission bits, a symbolic link keeps pointing at the (new) model, and neither failed nor
killed saves leave temporary files piling up. The kill tests run saves in child processes and
SIGKILL them, at chosen points and at seeded random moments.
"""

import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from minitensor import saving
from minitensor.layers import Dense, Input
from minitensor.models import Sequential, load_model

pytestmark = pytest.mark.reliability

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def small_model(fill=None):
    model = Sequential([Input(shape=(3,)), Dense(2, name="dense_a")], name="atomic")
    if fill is not None:
        model.set_weights([np.full(w.shape, fill, w.dtype) for w in model.get_weights()])
    return model


def weights_of(path):
    return [w.tolist() for w in load_model(path).get_weights()]


def temporaries(directory):
    return sorted(name for name in os.listdir(directory) if name.endswith(".minitensor-tmp") or name.endswith(".tmp"))


# ------------------------------------------------------------------ errors name the path asked for
def test_saving_into_a_missing_directory_names_the_path(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "model.minitensor"
    with pytest.raises(FileNotFoundError) as info:
        small_model().save(target)
    assert info.value.filename == str(target)
    assert str(target) in str(info.value) and ".minitensor-" not in str(info.value)


def test_saving_into_an_unwritable_directory_names_the_path(tmp_path):
    if os.geteuid() == 0:
        # permission bits do not bind root; sysfs refuses new files to everyone
        directory = "/sys"
    else:
        directory = tmp_path / "read_only"
        directory.mkdir()
        directory.chmod(0o555)
    target = os.path.join(directory, "model.minitensor")
    with pytest.raises(PermissionError) as info:
        small_model().save(target)
    assert info.value.filename == target
    assert ".minitensor-" not in str(info.value)


def test_saving_onto_a_directory_names_the_path(tmp_path):
    target = tmp_path / "a_directory"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        small_model().save(target)
    assert info.value.filename == str(target)
    assert os.listdir(tmp_path) == ["a_directory"] and os.listdir(target) == []


@pytest.mark.parametrize("bad", [None, 3, ""])
def test_a_filepath_that_is_no_path_raises(bad):
    with pytest.raises(ValueError, match="filepath"):
        small_model().save(bad)


def test_a_failed_write_removes_its_temporary_file_and_keeps_the_old_model(tmp_path, monkeypatch):
    target = tmp_path / "model.minitensor"
    small_model(1.0).save(target)

    def disk_full(handle, arrays):
        handle.write(b"PK partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saving, "_write_archive", disk_full)
    with pytest.raises(OSError) as info:
        small_model(2.0).save(target)
    assert info.value.errno == 28 and info.value.filename == str(target)
    assert os.listdir(tmp_path) == ["model.minitensor"]
    monkeypatch.undo()
    assert weights_of(target) == weights_of_model(small_model(1.0))


def weights_of_model(model):
    return [w.tolist() for w in model.get_weights()]


# ------------------------------------------------------------------ permissions and links
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o600, 0o664])
def test_overwriting_keeps_the_existing_files_mode(tmp_path, mode):
    target = tmp_path / "model.minitensor"
    small_model(1.0).save(target)
    os.chmod(target, mode)
    small_model(2.0).save(target)
    assert stat.S_IMODE(os.stat(target).st_mode) == mode
    assert weights_of(target) == weights_of_model(small_model(2.0))


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        small_model().save(tmp_path / "model.minitensor")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "model.minitensor").st_mode) == 0o666 & ~umask


def test_saving_to_a_symbolic_link_replaces_its_target_and_keeps_the_link(tmp_path):
    (tmp_path / "models").mkdir()
    real = tmp_path / "models" / "real.minitensor"
    small_model(1.0).save(real)
    os.chmod(real, 0o640)
    link = tmp_path / "latest.minitensor"
    link.symlink_to(os.path.join("models", "real.minitensor"))  # relative, as `ln -s` makes them
    chain = tmp_path / "chain.minitensor"
    chain.symlink_to(link)
    small_model(2.0).save(link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("models", "real.minitensor")
    assert weights_of(real) == weights_of_model(small_model(2.0))
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o640
    small_model(3.0).save(chain)
    assert chain.is_symlink() and link.is_symlink()
    assert weights_of(real) == weights_of_model(small_model(3.0))
    assert sorted(os.listdir(tmp_path)) == ["chain.minitensor", "latest.minitensor", "models"]
    assert os.listdir(tmp_path / "models") == ["real.minitensor"]


def test_a_dangling_symbolic_link_creates_its_target(tmp_path):
    link = tmp_path / "link.minitensor"
    link.symlink_to(tmp_path / "target.minitensor")
    small_model(4.0).save(link)
    assert link.is_symlink() and weights_of(tmp_path / "target.minitensor") == weights_of_model(small_model(4.0))


def test_the_directory_is_synced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(saving.os, "fsync", fsync)
    small_model().save(tmp_path / "model.minitensor")
    assert synced == [False, True]  # the file's data, then the directory holding the new name


# ------------------------------------------------------------------ temporary files of killed saves
def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_the_same_target_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "model.minitensor"
    pid = dead_pid()
    stale = [f".model.minitensor.{pid}-{i:016x}.minitensor-tmp" for i in range(3)]
    others = [
        f".other.minitensor.{pid}-{0:016x}.minitensor-tmp",  # a temporary of another target
        f".model.minitensor.{pid}-xyz.minitensor-tmp",  # not a name a save gives
        ".minitensor-abcd1234.tmp",  # the previous format's naming: not provably ours
        "model.minitensor.bak",
    ]
    for name in stale + others:
        (tmp_path / name).write_bytes(b"x" * 100)
    live = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys
            fd = os.open(os.path.join({str(tmp_path)!r}, ".model.minitensor.%d-%016x.minitensor-tmp" % (os.getpid(), 7)),
                         os.O_CREAT | os.O_WRONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("locked", flush=True)
            sys.stdin.read()
        """)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert live.stdout.readline() == "locked\n"
        small_model().save(target)
        names = sorted(os.listdir(tmp_path))
        assert names == sorted(["model.minitensor", f".model.minitensor.{live.pid}-{7:016x}.minitensor-tmp"] + others)
    finally:
        live.stdin.close()
        live.wait()
    assert load_model(target).count_params() == 8


KILLED_SAVER = textwrap.dedent("""
    import os, sys
    import numpy as np
    from minitensor import saving
    from minitensor.layers import Dense, Input
    from minitensor.models import Sequential
    from minitensor.optimizers import SGD

    target, pause_at = sys.argv[1], sys.argv[2]
    model = Sequential([Input(shape=(500,)), Dense(1000, name="big"), Dense(1, name="out")], name="victim")
    model.compile(optimizer=SGD(momentum=0.9), loss="mse")
    model.fit(np.zeros((2, 500), np.float32), np.zeros((2, 1), np.float32), verbose=0)

    def set_version(k):
        model.set_weights([np.full(w.shape, k, w.dtype) for w in model.get_weights()])
        state = model.optimizer.get_state()
        model.optimizer.set_state([np.array(k, np.int64)] + [np.full_like(s, k) for s in state[1:]])

    def pause(*args, **kwargs):
        print("paused", flush=True)
        sys.stdin.read()  # the parent kills us here

    if pause_at == "replace":
        saving.os.replace = pause  # the temporary file is complete, not yet renamed
    elif pause_at == "write":
        real = saving._HashingWriter.write
        calls = []

        def write(self, data):
            calls.append(len(data))
            if len(calls) == 5:  # inside the archive, some members written
                pause()
            return real(self, data)

        saving._HashingWriter.write = write
    k = int(sys.argv[3])
    print("ready", flush=True)
    while True:
        k += 1
        set_version(k)
        model.save(target)
        print("saved", k, flush=True)
""")


def start_saver(target, pause_at, first):
    return subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVER, str(target), pause_at, str(first)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def saved_version(path):
    """The k of the whole version ``path`` holds (all weights, slots and iterations equal k)."""
    model = load_model(path)
    k = model.optimizer.iterations
    assert all((w == k).all() for w in model.get_weights())
    assert all((s == k).all() for s in model.optimizer.get_state()[1:])
    return k


@pytest.mark.parametrize("pause_at", ["write", "replace"])
def test_a_save_killed_at_a_chosen_point_leaves_the_old_file_and_its_litter_is_cleaned(tmp_path, pause_at):
    target = tmp_path / "model.minitensor"
    saver = start_saver(target, "none", 0)
    assert saver.stdout.readline() == "ready\n" and saver.stdout.readline() == "saved 1\n"
    saver.kill()
    saver.wait()
    for round_ in range(2):
        saver = start_saver(target, pause_at, 10 * (round_ + 1))
        assert saver.stdout.readline() == "ready\n" and saver.stdout.readline() == "paused\n"
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        saver.stdin.close()
        saver.stdout.close()
        assert saved_version(target) == 1  # the killed save changed nothing
        assert len(temporaries(tmp_path)) == 1  # its own; the previous kill's was removed by this save
    small_model().save(target)
    assert os.listdir(tmp_path) == ["model.minitensor"]


def test_saves_killed_at_random_moments_leave_a_whole_model_and_no_growing_litter(tmp_path):
    target = tmp_path / "model.minitensor"
    rng = random.Random(20261202)
    last = 0
    for round_ in range(5):
        saver = start_saver(target, "none", 100 * round_)
        assert saver.stdout.readline() == "ready\n"
        assert saver.stdout.readline() == f"saved {100 * round_ + 1}\n"
        time.sleep(rng.uniform(0, 0.03))  # kill at some moment of the saves that follow
        saver.kill()
        saver.wait()
        saver.stdin.close()
        saver.stdout.close()
        k = saved_version(target)
        assert 100 * round_ < k and k > last
        last = k
        assert len(temporaries(tmp_path)) <= 1
    small_model().save(target)
    assert os.listdir(tmp_path) == ["model.minitensor"]


def test_a_long_file_name_saves_without_litter(tmp_path):
    target = tmp_path / ("m" * 240 + ".minitensor")  # a temporary name built on it would pass NAME_MAX
    small_model(5.0).save(target)
    small_model(6.0).save(target)
    assert os.listdir(tmp_path) == [target.name]
    assert weights_of(target) == weights_of_model(small_model(6.0))


def test_threads_saving_the_same_path_at_once_leave_one_whole_model(tmp_path):
    target = tmp_path / "model.minitensor"
    models = [small_model(float(k)) for k in range(6)]
    barrier = threading.Barrier(len(models))

    def save(model):
        barrier.wait()
        for _ in range(5):
            model.save(target)

    threads = [threading.Thread(target=save, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert weights_of(target) in [weights_of_model(m) for m in models]
    assert os.listdir(tmp_path) == ["model.minitensor"]
