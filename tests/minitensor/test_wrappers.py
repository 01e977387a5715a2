"""KerasClassifier and KerasRegressor: scikeras's API and its finer points, in scikit-learn's tools."""

import importlib
import pickle
import random
import sys
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from compare.data import load_digits_splits
from minitensor import losses, optimizers
from minitensor.callbacks import Callback, EarlyStopping
from minitensor.layers import Dense, Input
from minitensor.models import Sequential
from minitensor.random import set_random_seed
from minitensor.wrappers import KerasClassifier, KerasRegressor, route_params


def lesson_model(meta, units=12):
    """The lesson's even/odd model: 64-units-1, relu then sigmoid."""
    return Sequential([
        Input(shape=(meta["n_features_in_"],)), Dense(units, activation="relu"), Dense(1, activation="sigmoid"),
    ])


def softmax_model(meta, units=8):
    return Sequential([
        Input(shape=(meta["n_features_in_"],)), Dense(units, activation="relu"),
        Dense(meta["n_classes_"], activation="softmax"),
    ])


def regression_model(meta, units=8):
    return Sequential([
        Input(shape=(meta["n_features_in_"],)), Dense(units, activation="tanh"), Dense(meta["n_outputs_"]),
    ])


@pytest.fixture(scope="module")
def digits():
    return load_digits_splits()


def small_data(n=60, features=5, classes=("a", "b", "c"), seed=0):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, features)
    y = np.array([classes[i % len(classes)] for i in range(n)])
    return X, y


# ------------------------------------------------------------------ scikit-learn's tools
def test_grid_search_on_the_lessons_digits_task_with_two_jobs(digits):
    task = digits.target("binary")
    estimator = KerasClassifier(lesson_model, loss="binary_crossentropy", optimizer="adam", epochs=5,
                                batch_size=32, verbose=0, random_state=0)
    grid = {"model__units": [4, 12], "optimizer__learning_rate": [0.001, 0.01]}
    search = GridSearchCV(estimator, grid, cv=2, n_jobs=2).fit(task.x_t, task.y_t)
    serial = GridSearchCV(estimator, grid, cv=2, n_jobs=1).fit(task.x_t, task.y_t)
    # the same seeds give the same numbers in the workers as in this process
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_ == {"model__units": 12, "optimizer__learning_rate": 0.01}
    assert search.best_score_ > 0.85  # even/odd of 8x8 digits, 5 epochs
    assert search.score(task.x_test, task.y_test) > 0.85
    assert search.best_estimator_.model_.layers[0].units == 12
    assert search.best_estimator_.model_.optimizer.learning_rate == pytest.approx(0.01)


def test_pipeline_and_cross_val_score(digits):
    task = digits.target("multiclass")
    pipeline = make_pipeline(
        StandardScaler(),
        KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", optimizer="adam",
                        optimizer__learning_rate=0.01, model__units=16, epochs=5, verbose=0, random_state=1),
    )
    pipeline.fit(task.x_t, task.labels_t)
    assert pipeline.score(task.x_test, task.labels_test) > 0.8
    scores = cross_val_score(pipeline, task.x_t, task.labels_t, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.7)
    np.testing.assert_array_equal(scores, cross_val_score(pipeline, task.x_t, task.labels_t, cv=3))


def test_regressor_in_cross_val_score():
    rng = np.random.RandomState(0)
    X = rng.randn(120, 3)
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.randn(120)
    reg = KerasRegressor(regression_model, loss="mse", optimizer="adam", optimizer__learning_rate=0.05,
                         epochs=40, verbose=0, random_state=0)
    scores = cross_val_score(reg, X, y, cv=3)
    assert np.all(scores > 0.8)  # R², far above predicting the mean (0)


def test_clone_keeps_routed_parameters_and_drops_the_fit():
    X, y = small_data()
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", model__units=3,
                          optimizer__learning_rate=0.5, verbose=0).fit(X, y)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert copy.get_params()["model__units"] == 3
    assert not hasattr(copy, "model_") and not hasattr(copy, "classes_")


def test_pickle_round_trip_predicts_the_same_and_keeps_training():
    X, y = small_data()
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=2,
                          verbose=0, random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    # training resumes in the copy exactly as in the original
    clf.partial_fit(X, y)
    restored.partial_fit(X, y)
    for a, b in zip(clf.model_.get_weights(), restored.model_.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert restored.history_["loss"] == clf.history_["loss"]


def test_a_built_model_instance_is_used_and_cloned_copies_train():
    X, y = small_data(classes=(0, 1))
    model = Sequential([Input(shape=(5,)), Dense(1, activation="sigmoid")])
    clf = KerasClassifier(model, loss="binary_crossentropy", optimizer="sgd", verbose=0)
    clf.fit(X, y)
    assert clf.model_ is model and model.compiled
    copy = clone(clf)
    assert copy.model is not model
    before = copy.model.get_weights()
    copy.fit(X, y)
    assert any(np.any(a != b) for a, b in zip(before, copy.model_.get_weights()))


# ------------------------------------------------------------------ targets
def test_string_labels_round_trip():
    X, y = small_data(classes=("cat", "dog", "emu"))
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=30,
                          optimizer__learning_rate=0.05, verbose=0, random_state=0)
    X[:, 0] += np.array([0.0, 1.0, 2.0])[np.searchsorted(["cat", "dog", "emu"], y)]  # make them learnable
    clf.fit(X, y)
    assert list(clf.classes_) == ["cat", "dog", "emu"] and clf.n_classes_ == 3
    predicted = clf.predict(X)
    assert predicted.dtype == y.dtype and set(predicted) <= set(y)
    assert clf.score(X, y) > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(predicted, clf.classes_[np.argmax(proba, axis=1)])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_integer_labels_that_are_not_0_to_k():
    X, y = small_data(classes=(3, 7, 10))
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", verbose=0, random_state=0).fit(X, y)
    assert list(clf.classes_) == [3, 7, 10]
    assert set(clf.predict(X)) <= {3, 7, 10}


def _encoded(loss, labels, classes):
    index = np.searchsorted(classes, labels)
    if loss == "sparse_categorical_crossentropy":
        return index
    if loss == "binary_crossentropy" and len(classes) == 2:
        return index.astype("float32")
    return np.eye(len(classes), dtype="float32")[index]


@pytest.mark.parametrize(
    "loss, classes, activation, units",
    [
        ("sparse_categorical_crossentropy", ("a", "b", "c"), "softmax", 3),
        ("categorical_crossentropy", ("a", "b", "c"), "softmax", 3),
        ("binary_crossentropy", ("no", "yes"), "sigmoid", 1),
        ("categorical_crossentropy", ("no", "yes"), "softmax", 2),
    ],
)
def test_target_encoding_follows_the_loss(loss, classes, activation, units):
    """The wrapper's training equals training the model by hand on the encoding the loss needs."""
    X, y = small_data(classes=classes)

    def build(meta):
        return Sequential([Input(shape=(5,)), Dense(units, activation=activation)])

    clf = KerasClassifier(build, loss=loss, optimizer="adam", epochs=2, batch_size=16, verbose=0, random_state=5)
    clf.fit(X, y)
    set_random_seed(5)
    by_hand = build(None)
    by_hand.compile(optimizer="adam", loss=loss)
    set_random_seed(5)
    by_hand.fit(X, _encoded(loss, y, np.array(sorted(classes))), epochs=2, batch_size=16, verbose=0)
    for a, b in zip(clf.model_.get_weights(), by_hand.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert clf.predict_proba(X).shape == (len(X), len(classes))


def test_multilabel_and_one_hot_targets():
    X, _ = small_data()
    indicator = (X[:, :3] > 0.5).astype(int)

    def build(meta):
        return Sequential([Input(shape=(5,)), Dense(meta["n_classes_"], activation="sigmoid")])

    clf = KerasClassifier(build, loss="binary_crossentropy", optimizer="adam", verbose=0, random_state=0)
    clf.fit(X, indicator)
    assert clf.target_type_ == "multilabel-indicator" and clf.predict(X).shape == indicator.shape
    assert set(np.unique(clf.predict(X))) <= {0, 1}
    one_hot = np.eye(3, dtype=int)[np.arange(len(X)) % 3]
    clf = KerasClassifier(softmax_model, loss="categorical_crossentropy", verbose=0, random_state=0).fit(X, one_hot)
    assert clf.target_type_ == "multiclass-onehot"
    assert np.all(clf.predict(X).sum(axis=1) == 1)


def test_classifier_rejects_continuous_targets_and_regressor_strings():
    X, _ = small_data()
    with pytest.raises(ValueError, match="Unknown label type"):
        KerasClassifier(softmax_model, loss="mse", verbose=0).fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError):
        KerasRegressor(regression_model, loss="mse", verbose=0).fit(X, np.array(["a"] * len(X)))


def test_regressor_keeps_the_targets_shape_and_float_dtype():
    rng = np.random.RandomState(0)
    X = rng.rand(40, 3)
    Y = np.column_stack([X.sum(1), X[:, 0]]).astype(np.float32)
    reg = KerasRegressor(regression_model, loss="mse", verbose=0, random_state=0).fit(X, Y)
    assert reg.n_outputs_ == 2 and reg.predict(X).shape == (40, 2) and reg.predict(X).dtype == np.float32
    reg.fit(X, Y[:, 0].astype(np.float64))
    assert reg.predict(X).shape == (40,) and reg.predict(X).dtype == np.float64


# ------------------------------------------------------------------ randomness
def _fit_predict(**params):
    X, y = small_data()
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=2,
                          batch_size=8, verbose=0, **params)
    return clf.fit(X, y).predict_proba(X)


def test_fixed_random_state_gives_bit_identical_predictions():
    np.testing.assert_array_equal(_fit_predict(random_state=3), _fit_predict(random_state=3))
    state = np.random.RandomState(3)
    first = _fit_predict(random_state=state)
    np.testing.assert_array_equal(first, _fit_predict(random_state=state))  # the RandomState is not advanced
    assert np.any(_fit_predict(random_state=3) != _fit_predict(random_state=4))


def test_a_seeded_fit_restores_the_global_generators_and_later_fits_vary():
    np.random.seed(123)
    random.seed(123)
    expected_numpy = np.random.RandomState(123).uniform(size=3)
    expected_python = random.Random(123).random()
    _fit_predict(random_state=7)
    np.testing.assert_array_equal(np.random.uniform(size=3), expected_numpy)
    assert random.random() == expected_python
    assert np.any(_fit_predict() != _fit_predict())  # unseeded fits still draw fresh weights


def test_random_state_is_checked():
    X, y = small_data()
    with pytest.raises(ValueError, match="random_state"):
        KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", random_state=-1).fit(X, y)


# ------------------------------------------------------------------ scikeras's finer points
def test_set_params_accepts_routed_names_not_given_at_construction():
    X, y = small_data()
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", verbose=0)
    clf.set_params(model__units=3, optimizer="sgd", optimizer__learning_rate=0.25, fit__batch_size=7)
    params = clf.get_params()
    assert params["model__units"] == 3 and params["fit__batch_size"] == 7
    clf.fit(X, y)
    assert clf.model_.layers[0].units == 3
    assert type(clf.model_.optimizer).__name__ == "SGD" and clf.model_.optimizer.learning_rate == 0.25
    assert clf.model_.optimizer.iterations == 9  # ceil(60 / 7) steps of one epoch
    with pytest.raises(ValueError):
        clf.set_params(no_such_parameter=1)


def test_the_model_function_gets_meta_compile_kwargs_and_params_only_if_declared():
    X, y = small_data()
    seen = {}

    def bare(units=4):
        seen["bare"] = units
        return Sequential([Input(shape=(5,)), Dense(3, activation="softmax")])

    def with_meta(meta):
        seen["meta"] = meta
        return bare()

    def with_everything(**kwargs):
        seen["kwargs"] = kwargs
        model = bare()
        model.compile(**kwargs["compile_kwargs"])
        return model

    common = dict(loss="sparse_categorical_crossentropy", optimizer="adam", optimizer__learning_rate=0.5, verbose=0)
    KerasClassifier(bare, model__units=7, **common).fit(X, y)
    assert seen["bare"] == 7
    KerasClassifier(with_meta, **common).fit(X, y)
    assert seen["meta"]["n_features_in_"] == 5 and seen["meta"]["n_classes_"] == 3
    assert seen["meta"]["target_type_"] == "multiclass" and list(seen["meta"]["classes_"]) == ["a", "b", "c"]
    KerasClassifier(with_everything, **common).fit(X, y)
    kwargs = seen["kwargs"]
    assert set(kwargs) == {"meta", "compile_kwargs", "params"}
    assert isinstance(kwargs["compile_kwargs"]["optimizer"], optimizers.Adam)
    assert kwargs["compile_kwargs"]["optimizer"].learning_rate == 0.5
    assert kwargs["params"]["optimizer__learning_rate"] == 0.5


def test_warm_start_keeps_the_model_and_restarts_the_history():
    X, y = small_data()
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=2,
                          warm_start=True, verbose=0, random_state=0)
    clf.fit(X, y)
    model, weights, iterations = clf.model_, clf.model_.get_weights(), clf.model_.optimizer.iterations
    clf.fit(X, y)
    assert clf.model_ is model and len(clf.history_["loss"]) == 2
    assert clf.model_.optimizer.iterations == 2 * iterations
    assert any(np.any(a != b) for a, b in zip(weights, clf.model_.get_weights()))
    cold = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", epochs=2, verbose=0).fit(X, y)
    first = cold.model_
    cold.fit(X, y)
    assert cold.model_ is not first


def test_partial_fit_trains_one_epoch_and_appends():
    X, y = small_data()
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", epochs=5, verbose=0)
    clf.partial_fit(X, y)
    model = clf.model_
    clf.partial_fit(X, y)
    clf.partial_fit(X, y)
    assert clf.model_ is model and clf.current_epoch == 3 and len(clf.history_["loss"]) == 3
    assert len(set(clf.history_["loss"])) == 3
    with pytest.raises(TypeError, match="epochs"):
        clf.partial_fit(X, y, epochs=2)
    clf.fit(X, y)  # a fresh fit starts the history over
    assert len(clf.history_["loss"]) == 5


def test_partial_fit_with_classes_not_all_in_the_first_batch():
    X, y = small_data()
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", verbose=0)
    clf.partial_fit(X[y != "c"], y[y != "c"], classes=["a", "b", "c"])
    assert clf.n_classes_ == 3 and clf.target_type_ == "multiclass"
    clf.partial_fit(X, y)
    assert clf.predict_proba(X).shape == (len(X), 3)


def test_jit_compile_is_reachable_and_agrees_with_the_reference_path():
    X, y = small_data(classes=(0, 1))
    common = dict(loss="binary_crossentropy", optimizer="adam", epochs=3, batch_size=8, verbose=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback to the reference path
        compiled = KerasClassifier(lesson_model, compile__jit_compile=True, **common).fit(X, y)
        plain = KerasClassifier(lesson_model, jit_compile=True, **common).fit(X, y)
    reference = KerasClassifier(lesson_model, **common).fit(X, y)
    assert compiled.model_.jit_compile is True and reference.model_.jit_compile is False
    np.testing.assert_array_equal(plain.predict_proba(X), compiled.predict_proba(X))
    np.testing.assert_allclose(compiled.predict_proba(X), reference.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_routed_callbacks_loss_and_fit_arguments():
    X, y = small_data()
    records = []

    class Recorder(Callback):
        def __init__(self, tag="x"):
            super().__init__()
            self.tag = tag

        def on_epoch_end(self, epoch, logs=None):
            records.append((self.tag, epoch))

    clf = KerasClassifier(
        softmax_model, loss=losses.SparseCategoricalCrossentropy, loss__from_logits=False, epochs=3,
        callbacks=[Recorder, EarlyStopping], callbacks__0__tag="seen", callbacks__1__monitor="loss",
        callbacks__1__patience=5, fit__validation_split=0.25, verbose=0,
    )
    clf.fit(X, y)
    assert records == [("seen", 0), ("seen", 1), ("seen", 2)]
    assert "val_loss" in clf.history_
    assert isinstance(clf.model_.loss, losses.SparseCategoricalCrossentropy)


def test_sample_weights_of_zero_leave_rows_out_and_class_weight_applies():
    X, y = small_data()
    weights = np.where(np.arange(len(X)) % 4 == 0, 0.0, 1.0)
    common = dict(loss="sparse_categorical_crossentropy", epochs=2, verbose=0, random_state=2)
    weighted = KerasClassifier(softmax_model, **common).fit(X, y, sample_weight=weights)
    kept = KerasClassifier(softmax_model, **common).fit(X[weights > 0], y[weights > 0])
    np.testing.assert_array_equal(weighted.predict_proba(X), kept.predict_proba(X))
    original = weights.copy()
    balanced = KerasClassifier(softmax_model, class_weight="balanced", **common).fit(X, y, sample_weight=weights)
    np.testing.assert_array_equal(weights, original)  # the caller's array is not modified
    assert np.all(np.isfinite(balanced.predict_proba(X)))
    with pytest.raises(ValueError, match="(?i)sample.weight"):
        KerasClassifier(softmax_model, **common).fit(X, y, sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match="(?i)sample.weight"):
        KerasClassifier(softmax_model, **common).fit(X, y, sample_weight=-weights)


# ------------------------------------------------------------------ errors
def test_clear_errors():
    X, y = small_data()
    with pytest.raises(ValueError, match="model=None"):
        KerasClassifier(loss="mse").fit(X, y)
    with pytest.raises(TypeError, match="minitensor Sequential"):
        KerasClassifier(lambda: "not a model", loss="mse").fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        KerasClassifier(softmax_model).fit(X, y)
    with pytest.raises(TypeError, match="model"):
        KerasClassifier(42, loss="mse").fit(X, y)
    with pytest.raises(TypeError, match="optimizer"):
        KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", optimizer=optimizers.SGD(),
                        optimizer__learning_rate=0.1).fit(X, y)
    from sklearn.exceptions import NotFittedError

    unfitted = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", verbose=0)
    with pytest.raises(NotFittedError):
        unfitted.predict(X)
    fitted = unfitted.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :3])


def test_route_params():
    params = {"epochs": 2, "model__units": 3, "model__inner__x": 1, "fit__batch_size": 4}
    assert route_params(params, "model", None) == {"epochs": 2, "units": 3, "inner__x": 1}
    assert route_params(params, "model", set(), strict=True) == {"units": 3}


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    for name in [name for name in sys.modules if name == "sklearn" or name.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "minitensor.wrappers")
    with pytest.raises(ImportError, match=r'pip install "minitensor\[sklearn\]"'):
        importlib.import_module("minitensor.wrappers")


def test_plain_keyword_arguments_reach_the_model_function_and_subclasses_build_their_own():
    X, y = small_data()
    clf = KerasClassifier(softmax_model, loss="sparse_categorical_crossentropy", units=6, verbose=0).fit(X, y)
    assert clf.model_.layers[0].units == 6 and clf.get_params()["units"] == 6

    class Wide(KerasClassifier):
        def _keras_build_fn(self, meta, compile_kwargs):
            model = softmax_model(meta, units=9)
            model.compile(**compile_kwargs)
            return model

    wide = Wide(loss="sparse_categorical_crossentropy", optimizer="sgd", verbose=0).initialize(X, y)
    assert wide.model_.layers[0].units == 9 and wide.model_.compiled and not hasattr(wide, "history_")
    assert wide.predict(X).shape == (len(X),)
    with pytest.raises(ValueError, match="_keras_build_fn"):
        Wide(softmax_model, loss="sparse_categorical_crossentropy").fit(X, y)


def test_a_cloned_model_with_dropout_follows_random_state():
    """Copies of a model given as `model=` draw their dropout masks from the seeded global generator."""
    from minitensor.layers import Dropout

    X, y = small_data(classes=(0, 1))
    model = Sequential([Input(shape=(5,)), Dense(8, activation="relu"), Dropout(0.5), Dense(1, activation="sigmoid")])
    clf = KerasClassifier(model, loss="binary_crossentropy", epochs=2, verbose=0, random_state=0)
    first = clone(clf)
    np.random.uniform(size=10)  # the global generator moves on between the two clones
    second = clone(clf)
    assert second.model.layers[1]._rng is np.random.mtrand._rand
    np.testing.assert_array_equal(first.fit(X, y).predict_proba(X), second.fit(X, y).predict_proba(X))


def test_a_rows_prediction_does_not_depend_on_the_order_or_repetition_of_rows():
    # 20 rows of 3 features into one unit: here the engine's own predictions of shuffled rows
    # differ in the last bit for some orders (the BLAS product's blocking)
    rng = np.random.RandomState(0)
    X = 3 * rng.uniform(size=(20, 3))
    y = X @ np.array([0.5, -1.0, 2.0])

    def linear(meta):
        return Sequential([Input(shape=(3,)), Dense(1)])

    reg = KerasRegressor(linear, loss="mse", epochs=3, verbose=0, random_state=0).fit(X, y)
    expected = reg.predict(X)
    for seed in range(5):
        order = np.random.RandomState(seed).permutation(len(X))
        np.testing.assert_array_equal(reg.predict(X[order]), expected[order])
    doubled = np.concatenate([X[::-1], X])
    np.testing.assert_array_equal(reg.predict(doubled), np.concatenate([expected[::-1], expected]))
    np.testing.assert_allclose(expected, reg.model_.predict(X, verbose=0).ravel(), rtol=1e-6)
