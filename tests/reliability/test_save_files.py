"""Model files: a file loads exactly the model that was saved, or raises a ValueError naming it.

Files are crafted here with the test's own writer (``write_members``: zipfile plus NumPy's
``.npy`` writer, checksums computed here), so that each check of the loader is reached on its
own: a crafted file that passes the checksums must still be refused for what is wrong in it.
"""

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest
from hypothesis import settings

import minitensor as mt
from minitensor import saving
from minitensor.layers import Dense, Input
from minitensor.models import Sequential, load_model

pytestmark = pytest.mark.reliability

DATA = os.path.join(os.path.dirname(__file__), "data")


# ------------------------------------------------------------------ helpers
def trained_model(optimizer="adam"):
    """A small compiled model with optimizer state (two fit steps)."""
    mt.set_random_seed(3)
    model = Sequential([Input(shape=(3,)), Dense(4, activation="relu", name="hidden"), Dense(1, name="out")], name="small")
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3)
    model.fit(x, x.sum(1, keepdims=True), batch_size=4, epochs=1, verbose=0, shuffle=False)
    return model


def json_bytes(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def read_members(path) -> dict:
    """Every member of a model file as an array, read by NumPy (not by the loader)."""
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def write_members(path, members: dict, version=2, header=None) -> None:
    """Write ``members`` (name -> array, or raw ``.npy`` bytes) as a model file of ``version``, its checksums correct.

    ``header`` replaces the format header (a dict, or raw bytes of the JSON text).
    """
    blobs = {
        f"{key}.npy": value if isinstance(value, bytes) else npy_bytes(value)
        for key, value in members.items()
        if key != "format"
    }
    if header is None:
        header = {"format": "minitensor.model", "version": version}
        if version >= 2:
            header["sha256"] = {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()}
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    blobs["format.npy"] = npy_bytes(np.frombuffer(raw, dtype=np.uint8))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, blob in blobs.items():
            archive.writestr(name, blob)


def config_of(path) -> dict:
    return json.loads(read_members(path)["config"].tobytes().decode("utf-8"))


def assert_same_model(a, b):
    assert a.get_config() == b.get_config()
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    assert a.compiled == b.compiled
    if a.compiled:
        assert a.optimizer.get_config() == b.optimizer.get_config()
        sa, sb = a.optimizer.get_state(), b.optimizer.get_state()
        assert len(sa) == len(sb)
        for x, y in zip(sa, sb):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


def load_error(path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        (saving.load_model if kwargs else load_model)(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, message
    return message


@pytest.fixture
def saved(tmp_path):
    model = trained_model()
    path = tmp_path / "model.minitensor"
    model.save(path)
    return model, path


# ------------------------------------------------------------------ exactly the model saved
def test_round_trip_is_exact_and_the_header_holds_every_members_checksum(saved):
    model, path = saved
    assert_same_model(load_model(path), model)
    with zipfile.ZipFile(path) as archive:
        blobs = {name: archive.read(name) for name in archive.namelist()}
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    header = json.loads(np.load(io.BytesIO(blobs.pop("format.npy"))).tobytes())
    assert header["format"] == "minitensor.model" and header["version"] == 2 == saving.FORMAT_VERSION
    assert header["sha256"] == {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()}
    assert sorted(blobs) == ["config.npy"] + [f"optimizer_{i:03d}.npy" for i in range(3)] + [
        f"weight_{i:03d}.npy" for i in range(4)
    ]


@pytest.mark.parametrize("version", [1, 2])
def test_missing_weight_arrays_raise_instead_of_a_fresh_model(saved, tmp_path, version):
    _, path = saved
    members = {k: v for k, v in read_members(path).items() if not k.startswith("weight_")}
    crafted = tmp_path / "no_weights.minitensor"
    write_members(crafted, members, version=version)
    assert "holding 0 weight arrays where its config implies 4" in load_error(crafted)
    members = read_members(path)
    del members["weight_003"]
    write_members(crafted, members, version=version)
    assert "3 weight arrays" in load_error(crafted)


@pytest.mark.parametrize("version", [1, 2])
def test_missing_or_extra_optimizer_state_raises(saved, tmp_path, version):
    _, path = saved
    crafted = tmp_path / "crafted.minitensor"
    members = read_members(path)
    del members["optimizer_002"]
    write_members(crafted, members, version=version)
    assert "optimizer" in load_error(crafted)
    members = read_members(path)
    members["optimizer_003"] = members["optimizer_002"]
    write_members(crafted, members, version=version)
    assert "optimizer" in load_error(crafted)
    members = read_members(path)
    members["optimizer_002"] = np.zeros((5,), np.float32)  # a slot of the wrong shape (the flat buffer holds 21)
    write_members(crafted, members, version=version)
    assert "shape" in load_error(crafted)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda m: m.update(weight_000=m["weight_000"].T.copy()), "shape"),
        (lambda m: m.update(weight_001=m["weight_001"].astype(np.float64)), "dtype"),
        (lambda m: m.update(weight_001=m["weight_001"].astype(np.int32)), "dtype"),
        (lambda m: m.update(weight_001=m["weight_001"].astype(np.float16)), "dtype"),
        (lambda m: m.update(optimizer_001=m["optimizer_001"].astype(np.float64)), "dtype"),
        (lambda m: m.update(optimizer_000=np.float32(2.0)), "iterations"),
        (lambda m: m.update(optimizer_000=np.int64(-1)), "iterations"),
        (lambda m: m.update(weight_002=np.zeros((4, 1, 1), np.float32)), "shape"),
        (lambda m: m.update(extra=np.zeros(3)), "extra"),
        (lambda m: m.update(weight_005=np.zeros(1, np.float32)), "weight"),
        (lambda m: m.update(weight_0004=m.pop("weight_003")), "numbered"),
        (lambda m: m.update(config=np.zeros(4, np.float32)), "JSON"),
        (lambda m: m.update(config=json_bytes({"model": {"layers": []}, "compile": None})), "input_shape"),
    ],
)
@pytest.mark.parametrize("version", [1, 2])
def test_arrays_that_do_not_fit_the_config_raise(saved, tmp_path, change, expected, version):
    _, path = saved
    members = read_members(path)
    change(members)
    crafted = tmp_path / "crafted.minitensor"
    write_members(crafted, members, version=version)
    message = load_error(crafted)
    assert expected in message, message


def test_a_config_declaring_a_huge_layer_raises_before_allocating(saved, tmp_path):
    _, path = saved
    members = read_members(path)
    config = config_of(path)
    config["model"]["input_shape"] = [100_000]
    config["model"]["layers"][0]["config"]["units"] = 100_000  # a 40 GB kernel
    members["config"] = json_bytes(config)
    crafted = tmp_path / "huge.minitensor"
    write_members(crafted, members)
    assert "(100000, 100000)" in load_error(crafted)


def test_a_weight_rewritten_with_a_valid_crc_fails_its_checksum(saved, tmp_path):
    _, path = saved
    crafted = tmp_path / "crafted.minitensor"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(crafted, "w") as target:
        for info in source.infolist():
            blob = source.read(info)
            if info.filename == "weight_001.npy":
                weights = np.load(io.BytesIO(blob))
                blob = npy_bytes(weights + 1)
            target.writestr(info.filename, blob)  # zipfile computes a correct CRC-32
    assert "SHA-256" in load_error(crafted)


def test_compile_false_skips_the_optimizer_but_still_checks_its_members(saved, tmp_path):
    model, path = saved
    loaded = saving.load_model(path, compile=False)  # models.load_model takes the path only
    assert not loaded.compiled and loaded.get_config() == model.get_config()
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("optimizer_001.npy")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0x10  # inside the slot's values
    crafted = tmp_path / "crafted.minitensor"
    crafted.write_bytes(bytes(data))
    load_error(crafted, compile=False)


# ------------------------------------------------------------------ crafted headers and configs
def header_cases():
    good = {"format": "minitensor.model", "version": 2}
    return [
        ([1, 2], "JSON list"),
        ("minitensor", "JSON str"),
        ({**good, "version": "2"}, "version"),
        ({**good, "version": True}, "version"),
        ({**good, "version": 2.0}, "version"),
        ({**good, "version": 0}, "version"),
        ({"format": "minitensor.model"}, "version"),
        ({**good, "version": 99}, "newer"),
        ({**good, "format": ["minitensor.model"]}, "format"),
        ({**good, "sha256": ["x"]}, "SHA-256"),
        ({**good, "sha256": {"config.npy": 5}}, "SHA-256"),
        ({**good, "sha256": {"config.npy": "0" * 64}}, "members"),
        (b"\xff\xfe not utf-8", "UTF-8"),
        (b'{"format": "minitensor.model", "version": ', "JSON"),
        (b"[" * 100_000, "JSON"),
    ]


@pytest.mark.parametrize("header, expected", header_cases())
def test_crafted_headers_raise_value_errors_naming_the_file(saved, tmp_path, header, expected):
    _, path = saved
    crafted = tmp_path / "crafted.minitensor"
    write_members(crafted, read_members(path), header=header)
    message = load_error(crafted)
    assert expected in message, message


def config_cases():
    def layer(update):
        def change(config):
            config["model"]["layers"][0]["config"].update(update)

        return change

    def compile_(update):
        def change(config):
            config["compile"].update(update)

        return change

    def setitem(*keys, value):
        def change(config):
            target = config
            for key in keys[:-1]:
                target = target[key]
            target[keys[-1]] = value

        return change

    return [
        (setitem("model", value=[1, 2]), "model"),
        (lambda c: c.pop("model"), "model"),
        (lambda c: c.pop("compile"), "compile"),
        (setitem("model", "layers", value={"a": 1}), "layers"),
        (setitem("model", "layers", value=[5]), "layers"),
        (setitem("model", "name", value=7), "name"),
        (setitem("model", "input_shape", value=None), "input_shape"),
        (setitem("model", "input_shape", value=[3.5]), "input_shape"),
        (setitem("model", "input_shape", value=[-3]), "input_shape"),
        (setitem("model", "input_shape", value="3"), "input_shape"),
        (setitem("model", "layers", 0, "class_name", value="Conv2D"), "config"),
        (setitem("model", "layers", 0, "class_name", value=["Dense"]), "config"),
        (setitem("model", "layers", 0, "config", value=[4]), "config"),
        (setitem("model", "layers", 0, value={"class_name": "Dense"}), "config"),
        (setitem("model", "layers", 0, value={"class_name": "InputLayer", "config": {"shape": [3]}}), "Input"),
        (layer({"units": "4"}), "units"),
        (layer({"units": None}), "units"),
        (layer({"activation": 12}), "config"),
        (layer({"kernel_initializer": {"class_name": 3}}), "config"),
        (layer({"surprise": 1}), "config"),
        (lambda c: c["model"]["layers"][0]["config"].pop("units"), "config"),
        (setitem("compile", value=[1]), "compile"),
        (setitem("compile", value={"optimizer": "adam"}), "compile"),
        (compile_({"optimizer": "nonesuch"}), "optimizer"),
        (compile_({"optimizer": {"class_name": "Adam", "config": [1]}}), "compile settings"),
        (compile_({"optimizer": {"class_name": "Adam", "config": {"learning_rate": "fast"}}}), "compile settings"),
        (compile_({"optimizer": {"class_name": "SGD", "config": {"momentum": 0.9}}}), "optimizer state"),
        (compile_({"loss": 42}), "compile settings"),
        (compile_({"loss": {"class_name": "Nonesuch", "config": {}}}), "compile settings"),
        (compile_({"metrics": "mae"}), "metrics"),
        (compile_({"metrics": [{"class_name": "np", "config": {}}]}), "metric"),
        (compile_({"metrics": [{"class_name": "Metric", "config": {"name": "m"}}]}), "metric"),
        (compile_({"metrics": [{"class_name": "Mean", "config": 3}]}), "metric"),
        (compile_({"metrics": [7]}), "metric"),
        (compile_({"jit_compile": "yes"}), "jit_compile"),
        (compile_({"jit_compile": 1}), "jit_compile"),
    ]


@pytest.mark.parametrize("change, expected", config_cases())
@pytest.mark.parametrize("version", [1, 2])
def test_crafted_configs_raise_value_errors_naming_the_file(saved, tmp_path, change, expected, version):
    _, path = saved
    members = read_members(path)
    config = config_of(path)
    change(config)
    members["config"] = json_bytes(config)
    crafted = tmp_path / "crafted.minitensor"
    write_members(crafted, members, version=version)
    message = load_error(crafted)
    assert expected in message, message


def test_optimizer_state_in_a_file_of_an_uncompiled_model_raises(saved, tmp_path):
    _, path = saved
    members = read_members(path)
    config = config_of(path)
    config["compile"] = None
    members["config"] = json_bytes(config)
    crafted = tmp_path / "crafted.minitensor"
    write_members(crafted, members)
    assert "not compiled" in load_error(crafted)


# ------------------------------------------------------------------ files that are no model file
def test_paths_that_are_no_model_file_raise_value_errors(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cases = {}
    cases["empty"] = tmp_path / "empty.minitensor"
    cases["empty"].write_bytes(b"")
    cases["directory"] = tmp_path / "a_directory"
    cases["directory"].mkdir()
    cases["npy"] = tmp_path / "weights.npy"
    np.save(cases["npy"], np.zeros(3))
    cases["npz"] = tmp_path / "arrays.npz"
    np.savez(cases["npz"], a=np.zeros(3))
    cases["text"] = tmp_path / "notes.txt"
    cases["text"].write_text("hello")
    cases["truncated"] = tmp_path / "truncated.minitensor"
    cases["truncated"].write_bytes(data[: len(data) // 2])
    cases["zip_version"] = tmp_path / "zip_version.minitensor"
    central = data.index(b"PK\x01\x02")  # the central directory's first entry
    cases["zip_version"].write_bytes(data[: central + 6] + bytes([99]) + data[central + 7 :])  # needs zip 9.9
    cases["compressed"] = tmp_path / "compressed.minitensor"
    with open(cases["compressed"], "wb") as handle:
        np.savez_compressed(handle, **read_members(path))
    cases["pickle"] = tmp_path / "pickle.minitensor"
    members = read_members(path)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.array([object()], dtype=object), allow_pickle=True)
    members["weight_000"] = buffer.getvalue()  # a pickle, its checksum correct
    write_members(cases["pickle"], members)
    fifo = tmp_path / "a_pipe"
    os.mkfifo(fifo)
    cases["fifo"] = fifo
    expected = {
        "empty": "empty",
        "directory": "directory",
        "npy": "zip",
        "npz": "unexpected member",
        "text": "zip",
        "truncated": "truncated",
        "zip_version": "zip",
        "compressed": "compressed",
        "pickle": "object",
        "fifo": "regular file",
    }
    for name, case in cases.items():
        message = load_error(case)
        assert "Expected a minitensor model file" in message and expected[name] in message, (name, message)


def test_a_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_model(tmp_path / "missing.minitensor")
    assert info.value.filename == str(tmp_path / "missing.minitensor")


@pytest.mark.parametrize("bad", [None, 3, ""])
def test_a_filepath_that_is_no_path_raises(bad):
    with pytest.raises(ValueError, match="filepath"):
        load_model(bad)


# ------------------------------------------------------------------ version 1 files
@pytest.mark.parametrize("name", ["v1_adam.minitensor", "v1_uncompiled.minitensor"])
def test_version_1_files_written_by_the_version_1_saver_still_load(name):
    path = os.path.join(DATA, name)
    members = read_members(path)
    assert json.loads(members["format"].tobytes()) == {"format": "minitensor.model", "version": 1}
    config = json.loads(members["config"].tobytes())
    model = load_model(path)
    assert model.get_config() == config["model"]
    weights = [members[k] for k in sorted(members) if k.startswith("weight_")]
    assert len(model.get_weights()) == len(weights) > 0
    for a, b in zip(model.get_weights(), weights):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    state = [members[k] for k in sorted(members) if k.startswith("optimizer_")]
    if config["compile"] is None:
        assert not model.compiled and not state
    else:
        assert model.optimizer.get_config() == config["compile"]["optimizer"]["config"]
        assert model.optimizer.iterations == int(state[0]) == 4
        for a, b in zip(model.optimizer.get_state(), state):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ NaN and inf
def test_weights_holding_nan_or_inf_load_with_a_warning_naming_file_and_weights(tmp_path):
    model = trained_model()
    weights = model.get_weights()
    weights[0][1, 2] = np.nan
    weights[3][0] = -np.inf
    model.set_weights(weights)
    path = tmp_path / "nan.minitensor"
    model.save(path)
    with pytest.warns(RuntimeWarning) as record:
        loaded = load_model(path)
    message = " ".join(str(w.message) for w in record)
    assert str(path) in message and "hidden/kernel" in message and "out/bias" in message
    assert "hidden/bias" not in message
    assert loaded.get_config() == model.get_config()
    for a, b in zip(loaded.get_weights(), weights):  # NaN != NaN: compare bit patterns
        assert a.tobytes() == b.tobytes()


def test_optimizer_slots_holding_nan_load_with_a_warning(saved, tmp_path):
    _, path = saved
    members = read_members(path)
    members["optimizer_002"] = members["optimizer_002"].copy()
    members["optimizer_002"][5] = np.nan
    crafted = tmp_path / "nan_slot.minitensor"
    write_members(crafted, members)
    with pytest.warns(RuntimeWarning, match="optimizer state 2"):
        loaded = load_model(crafted)
    assert np.isnan(loaded.optimizer.get_state()[2][5])


def test_finite_weights_load_without_warnings(saved, recwarn):
    _, path = saved
    load_model(path)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# ------------------------------------------------------------------ the byte-flip sweep
def sweep_positions(data: bytes) -> list:
    """Positions to flip: every byte of the zip directory (central directory and end records), where a
    flip once loaded a fresh model, and one byte in 4 of the members' local headers and one in 16 of
    their data. Under the ``thorough`` profile (``make test-thorough``): every byte.
    """
    if settings.get_current_profile_name() == "thorough":
        return list(range(len(data)))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    directory = data.index(b"PK\x01\x02")  # the central directory's first entry
    headers, payload = set(), set()
    for info in infos:
        # the local header's extra field may differ from the central one's: read its length
        extra = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
        start = info.header_offset + 30 + len(info.filename.encode()) + extra
        headers.update(range(info.header_offset, start))
        payload.update(range(start, start + info.compress_size))
    assert len(headers) + len(payload) == directory  # the members fill the file up to the directory
    return (
        [i for i in sorted(headers) if i % 4 == 0]
        + [i for i in sorted(payload) if i % 16 == 0]
        + list(range(directory, len(data)))
    )


def test_every_flipped_byte_gives_the_same_model_or_a_value_error(tmp_path):
    model = Sequential([Input(shape=(2,)), Dense(2, name="a"), Dense(1, name="b")], name="tiny")
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((2, 2), np.float32), np.ones((2, 1), np.float32), verbose=0)
    path = tmp_path / "tiny.minitensor"
    model.save(path)
    reference = load_model(path)
    data = path.read_bytes()
    positions = sweep_positions(data)
    assert len(positions) > len(data) // 8
    flipped = tmp_path / "flipped.minitensor"
    outcomes = {"same": 0, "error": 0}
    for k, i in enumerate(positions):
        corrupted = bytearray(data)
        corrupted[i] ^= (0xFF, 0x01, 0x80)[k % 3]
        flipped.write_bytes(bytes(corrupted))
        try:
            loaded = load_model(flipped)
        except ValueError as error:
            assert str(flipped) in str(error)
            outcomes["error"] += 1
            continue
        assert_same_model(loaded, reference)  # any other outcome is a silently different model
        outcomes["same"] += 1
    assert outcomes["error"] > 0 and outcomes["same"] > 0  # both kinds of positions were reached
