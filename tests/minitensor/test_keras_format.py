"""Keras 3 ``.keras`` files without TensorFlow: the layout written, round trips, and clear errors.

The round trips against real tf.keras are in test_keras_format_keras.py.
"""

import io
import json
import sys
import zipfile

import h5py
import numpy as np
import pytest

from minitensor import keras_format, losses, optimizers, regularizers
from minitensor.layers import Activation, Dense, Dropout, Input
from minitensor.models import Sequential, load_model

X = np.random.RandomState(0).rand(24, 4).astype("float32")
Y = (X.sum(1) > 2).astype("float32")


def trained_model(optimizer=None, frozen=False, epochs=2, rate=0.25):
    model = Sequential([
        Input(shape=(4,)),
        Dense(5, activation="relu", kernel_regularizer=regularizers.L2(0.01), name="hidden", trainable=not frozen),
        Dropout(rate, seed=3),
        Dense(1, name="out"),
        Activation("sigmoid"),
    ])
    model.compile(optimizer=optimizer or optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy",
                  metrics=["accuracy"])
    if epochs:
        model.fit(X, Y, epochs=epochs, batch_size=8, shuffle=False, verbose=0)
    return model


def members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}, archive.infolist()


def rewrite(path, target, edit_config=None, edit_weights=None):
    """Copy a .keras file to ``target``, changing its config and/or its weights file."""
    contents, _ = members(path)
    config = json.loads(contents["config.json"])
    if edit_config:
        edit_config(config)
    weights = contents["model.weights.h5"]
    if edit_weights:
        buffer = io.BytesIO(weights)
        with h5py.File(buffer, "a") as h5:
            edit_weights(h5)
        weights = buffer.getvalue()
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("metadata.json", contents["metadata.json"])
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights)
    return target


# ------------------------------------------------------------------ the layout written
def test_the_archive_holds_keras_three_members_uncompressed(tmp_path):
    path = tmp_path / "m.keras"
    trained_model().save(path)
    contents, infos = members(path)
    assert sorted(contents) == ["config.json", "metadata.json", "model.weights.h5"]
    assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)
    metadata = json.loads(contents["metadata.json"])
    assert metadata["keras_version"].startswith("3.") and "date_saved" in metadata


def test_config_is_keras_serialised(tmp_path):
    path = tmp_path / "m.keras"
    trained_model().save(path)
    config = json.loads(members(path)[0]["config.json"])
    assert config["class_name"] == "Sequential" and config["module"] == "keras"
    layers = config["config"]["layers"]
    assert [l["class_name"] for l in layers] == ["InputLayer", "Dense", "Dropout", "Dense", "Activation"]
    assert all(l["module"] == "keras.layers" for l in layers)
    assert layers[0]["config"]["batch_shape"] == [None, 4]
    hidden = layers[1]["config"]
    assert hidden["name"] == "hidden" and hidden["units"] == 5 and hidden["activation"] == "relu"
    assert hidden["kernel_initializer"]["class_name"] == "GlorotUniform"
    assert hidden["kernel_initializer"]["module"] == "keras.initializers"
    assert hidden["kernel_regularizer"] == {"module": "keras.regularizers", "class_name": "L2",
                                            "config": {"l2": 0.01}, "registered_name": None}
    assert hidden["dtype"]["config"]["name"] == "float32"
    assert layers[2]["config"]["rate"] == 0.25 and layers[2]["config"]["seed"] == 3
    assert layers[1]["build_config"] == {"input_shape": [None, 4]}
    assert layers[3]["build_config"] == {"input_shape": [None, 5]}
    compile_config = config["compile_config"]
    assert compile_config["optimizer"]["class_name"] == "Adam"
    assert compile_config["optimizer"]["config"]["learning_rate"] == pytest.approx(0.01)
    assert compile_config["loss"]["class_name"] == "BinaryCrossentropy"
    assert compile_config["metrics"] == ["accuracy"]


def test_weights_file_layout(tmp_path):
    path = tmp_path / "m.keras"
    model = trained_model()
    model.save(path)
    with h5py.File(io.BytesIO(members(path)[0]["model.weights.h5"]), "r") as h5:
        assert set(h5["layers"]) == {"dense", "dropout", "dense_1", "activation"}
        assert h5["layers/dense/vars"].attrs["name"] == "hidden"
        np.testing.assert_array_equal(h5["layers/dense/vars/0"][()], model.layers[0].kernel.data)
        np.testing.assert_array_equal(h5["layers/dense/vars/1"][()], model.layers[0].bias.data)
        np.testing.assert_array_equal(h5["layers/dense_1/vars/0"][()], model.layers[2].kernel.data)
        assert len(h5["layers/dropout/vars"]) == 0
        state = h5["optimizer/vars"]
        assert state.attrs["name"] == model.optimizer.name
        assert state["0"].dtype == np.int64 and state["0"][()] == model.optimizer.iterations == 6
        assert state["1"].dtype == np.float32 and state["1"][()] == np.float32(0.01)
        # Adam: per trainable weight, its momentum then its velocity (kernel, bias, kernel, bias)
        shapes = [state[str(i)].shape for i in range(2, len(state))]
        assert shapes == [(4, 5), (4, 5), (5,), (5,), (5, 1), (5, 1), (1,), (1,)]
        flat_state = model.optimizer.get_state()
        momentum, velocity = flat_state[1].reshape(-1), flat_state[2].reshape(-1)
        offset = 0
        for k, w in enumerate(model.trainable_weights):
            np.testing.assert_array_equal(state[str(2 + 2 * k)][()].reshape(-1), momentum[offset : offset + w.size])
            np.testing.assert_array_equal(state[str(3 + 2 * k)][()].reshape(-1), velocity[offset : offset + w.size])
            offset += w.size


def test_an_optimizer_never_stepped_is_written_with_fresh_slots(tmp_path):
    path = tmp_path / "m.keras"
    trained_model(optimizers.Adagrad(initial_accumulator_value=0.25), epochs=0).save(path)
    with h5py.File(io.BytesIO(members(path)[0]["model.weights.h5"]), "r") as h5:
        state = h5["optimizer/vars"]
        assert state["0"][()] == 0 and len(state) == 2 + 4
        assert all(np.all(state[str(i)][()] == np.float32(0.25)) for i in range(2, 6))


# ------------------------------------------------------------------ round trips
OPTIMIZERS = [
    lambda: optimizers.SGD(learning_rate=0.1),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    lambda: optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
    lambda: optimizers.Adam(learning_rate=0.01, amsgrad=True),
    lambda: optimizers.Adam(learning_rate=0.01, clipnorm=1.0),
    lambda: optimizers.Adagrad(learning_rate=0.1),
]


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS)
@pytest.mark.parametrize("frozen", [False, True])
def test_round_trip_resumes_training_bit_identically(tmp_path, make_optimizer, frozen):
    model = trained_model(make_optimizer(), frozen=frozen, rate=0.0)  # no masks: training is deterministic
    path = tmp_path / "m.keras"
    model.save(path)
    restored = load_model(path)
    assert [l.name for l in restored.layers] == [l.name for l in model.layers]
    assert restored.layers[0].trainable is not frozen
    assert isinstance(restored.layers[0].kernel_regularizer, regularizers.L2)
    assert restored.layers[1].rate == 0.0 and restored.layers[1].seed == 3
    assert isinstance(restored.loss, losses.BinaryCrossentropy)
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(X, verbose=0), restored.predict(X, verbose=0))
    h1 = model.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    h2 = restored.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0).history
    assert h1 == h2
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert restored.optimizer.iterations == model.optimizer.iterations


def test_float64_layers_and_models_without_input_layer_in_the_config(tmp_path):
    model = Sequential([Input(shape=(3,)), Dense(2, dtype="float64", use_bias=False)])
    path = tmp_path / "m.keras"
    model.save(path)

    def drop_input_layer(config):
        config["config"]["layers"].pop(0)

    restored = load_model(rewrite(path, tmp_path / "n.keras", drop_input_layer))
    assert restored.built and restored.input_shape == (None, 3)
    assert restored.layers[0].dtype == np.float64 and not restored.layers[0].use_bias
    np.testing.assert_array_equal(restored.get_weights()[0], model.get_weights()[0])
    assert not restored.compiled


def test_compile_false_skips_the_compile_settings(tmp_path):
    path = tmp_path / "m.keras"
    trained_model().save(path)
    assert not keras_format.load_model(path, compile=False).compiled


def test_loss_and_metrics_given_as_objects(tmp_path):
    from minitensor import metrics

    model = Sequential([Input(shape=(4,)), Dense(3, activation="softmax")])
    model.compile(optimizer="rmsprop", loss=losses.CategoricalCrossentropy(label_smoothing=0.1),
                  metrics=[metrics.CategoricalAccuracy(name="acc"), "mae"])
    path = tmp_path / "m.keras"
    model.save(path)
    restored = load_model(path)
    assert restored.loss.get_config() == model.loss.get_config()
    assert isinstance(restored._metric_identifiers[0], metrics.CategoricalAccuracy)
    assert restored._metric_identifiers[1] == "mae"


# ------------------------------------------------------------------ errors, reading
@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.keras"
    trained_model().save(path)
    return path


def _layer(config, index):
    return config["config"]["layers"][index]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: _layer(c, 1).update(class_name="Conv2D"), r"Conv2D.*Supported layers are|supported layers are"),
        (lambda c: c.update(class_name="Functional"), "Sequential models only"),
        (lambda c: _layer(c, 1)["config"].update(activation="gelu"), "gelu"),
        (lambda c: _layer(c, 1)["config"].update(kernel_constraint={"class_name": "NonNeg", "config": {}}),
         "kernel_constraint"),
        (lambda c: _layer(c, 1)["config"]["dtype"]["config"].update(name="mixed_float16"), "mixed_float16"),
        (lambda c: _layer(c, 1)["config"].update(kernel_initializer={"class_name": "Orthogonal", "config": {}}),
         "Orthogonal"),
        (lambda c: _layer(c, 1)["config"].update(some_new_option=3), "some_new_option"),
        (lambda c: c["compile_config"]["optimizer"].update(class_name="Nadam"), "Nadam"),
        (lambda c: c["compile_config"]["optimizer"]["config"].update(use_ema=True), "use_ema"),
        (lambda c: c["compile_config"].update(loss_weights=[0.5]), "loss_weights"),
        (lambda c: c["compile_config"].update(loss="huber"), "huber"),
        (lambda c: c["compile_config"].update(metrics=["auc"]), "auc"),
        (lambda c: _layer(c, 0)["config"].update(sparse=True), "sparse"),
    ],
)
def test_unsupported_contents_are_named(saved, tmp_path, edit, message):
    path = rewrite(saved, tmp_path / "bad.keras", edit)
    with pytest.raises(ValueError, match=message) as error:
        load_model(path)
    assert "bad.keras" in str(error.value)


def test_a_missing_layer_in_the_weights_file_is_an_error(saved, tmp_path):
    path = rewrite(saved, tmp_path / "bad.keras", edit_weights=lambda h5: h5.__delitem__("layers/dense_1"))
    with pytest.raises(ValueError, match="'out'.*dense_1"):
        load_model(path)


def test_mismatched_optimizer_state_warns_and_starts_afresh(saved, tmp_path):
    path = rewrite(saved, tmp_path / "odd.keras", edit_weights=lambda h5: h5.__delitem__("optimizer/vars/9"))
    with pytest.warns(UserWarning, match="starts afresh"):
        model = load_model(path)
    assert model.optimizer.iterations == 0


def test_files_that_are_not_keras_archives(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.keras")
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="junk.keras"):
        load_model(junk)
    npz = tmp_path / "npz.keras"
    with zipfile.ZipFile(npz, "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
        archive.writestr("model.weights.npz", b"")
    with pytest.raises(ValueError, match="model.weights.npz"):
        load_model(npz)


# ------------------------------------------------------------------ errors, writing
def test_models_keras_cannot_express_are_refused_and_nothing_is_written(tmp_path):
    from minitensor import ops

    path = tmp_path / "m.keras"
    custom = Sequential([Input(shape=(2,)), Dense(1, activation=lambda t: ops.relu(t), name="odd")])
    with pytest.raises(ValueError, match="'odd'"):
        custom.save(path)
    assert not path.exists() and not list(tmp_path.iterdir())
    loss_fn = Sequential([Input(shape=(2,)), Dense(1)])
    loss_fn.compile(optimizer="sgd", loss=lambda y, p: ((y - p) ** 2).mean())
    with pytest.raises(ValueError, match="loss"):
        loss_fn.save(path)
    with pytest.raises(ValueError, match="built"):
        Sequential([Dense(1)]).save(path)
    with pytest.raises(ValueError, match=r"\.keras"):
        keras_format.save_model(Sequential([Input(shape=(2,)), Dense(1)]), tmp_path / "m.h5")
    assert not list(tmp_path.iterdir())


def test_missing_h5py_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r'pip install "minitensor\[keras-files\]"'):
        Sequential([Input(shape=(2,)), Dense(1)]).save(tmp_path / "m.keras")
    with pytest.raises(ImportError, match=r'pip install "minitensor\[keras-files\]"'):
        load_model(tmp_path / "m.keras")


def test_losses_and_metrics_serialised_as_functions_are_read(saved, tmp_path):
    def as_functions(config):
        config["compile_config"]["loss"] = {"module": "keras.losses", "class_name": "function",
                                            "config": "binary_crossentropy", "registered_name": "binary_crossentropy"}
        config["compile_config"]["metrics"] = [{"module": "keras.metrics", "class_name": "function",
                                                "config": "binary_accuracy", "registered_name": None}]

    model = load_model(rewrite(saved, tmp_path / "functions.keras", as_functions))
    assert isinstance(model.loss, losses.BinaryCrossentropy)
    assert model._metric_identifiers == ["binary_accuracy"]
    history = model.fit(X, Y, epochs=1, verbose=0).history
    assert sorted(history) == ["binary_accuracy", "loss"]


def test_saving_a_keras_file_is_atomic_as_model_files_are(tmp_path):
    """A .keras save keeps an existing file's mode, gives a new one 0666 & ~umask, follows symbolic
    links (the link stays) and leaves no temporary file: the same writer as minitensor's own format."""
    import os
    import stat

    model = trained_model()
    old_umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.keras"
        model.save(fresh)
        assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o644
        existing = tmp_path / "existing.keras"
        model.save(existing)
        os.chmod(existing, 0o640)
        model.save(existing)
        assert stat.S_IMODE(os.stat(existing).st_mode) == 0o640
    finally:
        os.umask(old_umask)
    target = tmp_path / "target.keras"
    model.save(target)
    link = tmp_path / "link.keras"
    link.symlink_to(target)
    other = trained_model(epochs=3)
    other.save(link)
    assert link.is_symlink()
    np.testing.assert_array_equal(load_model(target).get_weights()[0], other.get_weights()[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.keras", "fresh.keras", "link.keras", "target.keras"]


def test_saving_a_keras_file_names_the_path_asked_for(tmp_path):
    missing = tmp_path / "no-such-directory" / "model.keras"
    with pytest.raises(FileNotFoundError) as error:
        trained_model().save(missing)
    assert str(missing) in str(error.value)
