"""The Keras lesson on scikit-learn's digits, run with minitensor: only the imports changed.

Every model of the lesson is trained in order, with the lesson's own code,
including its Keras-2 spellings (``SGD(lr=...)``, ``results.history['acc']``,
``model.predict_classes``), which minitensor accepts with a DeprecationWarning.
Instead of the lesson's seaborn plots, each run prints what those plots show:
one line per epoch (or every few epochs for long runs) of loss and accuracy.

Usage:
    python examples/lesson.py                    # the whole lesson
    python examples/lesson.py --epochs-scale 0.1 # a quick look (at least 1 epoch per fit)
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OneHotEncoder

from minitensor import regularizers
from minitensor.callbacks import EarlyStopping
from minitensor.layers import Dense, Dropout
from minitensor.models import Sequential
from minitensor.optimizers import SGD

SCALE = 1.0


def epochs(n):
    """The lesson's epoch count, scaled for a quick run."""
    return max(1, int(round(n * SCALE)))


def show(title, results, keys=("loss", "acc")):
    """Print what the lesson plots: the per-epoch curves of ``keys``."""
    history = results.history
    n = len(results.epoch)
    every = max(1, n // 10)
    print(f"\n== {title} ({n} epochs)")
    for i in range(0, n, every):
        values = "  ".join(f"{k}={history[k][i]:.4f}" for k in keys)
        print(f"  epoch {results.epoch[i] + 1:3d}  {values}")
    if (n - 1) % every:
        values = "  ".join(f"{k}={history[k][-1]:.4f}" for k in keys)
        print(f"  epoch {results.epoch[-1] + 1:3d}  {values}")


def binary_data():
    digits = load_digits()
    X, y = digits.data, digits.target
    y_binary = y % 2
    X_train, X_test, y_train, y_test = train_test_split(X, y_binary, random_state=42, test_size=0.2)
    X_t, X_val, y_t, y_val = train_test_split(X_train, y_train, random_state=42, test_size=0.2)
    return X_t / 16, X_val / 16, X_test / 16, y_t, y_val, y_test


def sigmoid_sgd(X_t, y_t, batch_size, n_epochs, optimizer="SGD", title=""):
    model = Sequential()
    model.add(Dense(12, activation="sigmoid", input_dim=64))
    model.add(Dense(8, activation="sigmoid"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    results = model.fit(X_t, y_t, epochs=epochs(n_epochs), batch_size=batch_size, verbose=0)
    show(title, results)
    return results


def relu_model(X_t, y_t, optimizer, batch_size, n_epochs, hidden=(12, 8), title="", **fit):
    model = Sequential()
    model.add(Dense(hidden[0], activation="relu", input_dim=64))
    for units in hidden[1:]:
        model.add(Dense(units, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(optimizer=optimizer, loss="binary_crossentropy", metrics=["accuracy"])
    results = model.fit(X_t, y_t, epochs=epochs(n_epochs), batch_size=batch_size, verbose=0, **fit)
    keys = ("loss", "acc", "val_loss", "val_acc") if "validation_data" in fit else ("loss", "acc")
    show(title, results, keys)
    return results


def deep_model(l2_layers=(), early_stop=None, X_t=None, y_t=None, X_val=None, y_val=None, title=""):
    np.random.seed(42)
    model = Sequential()
    model.add(Dense(30, activation="relu", input_dim=64))
    sizes = [20, 12, 12, 12, 8, 4]
    for i, units in enumerate(sizes, start=1):
        reg = regularizers.l2(0.01) if i in l2_layers else None
        model.add(Dense(units, activation="relu", kernel_regularizer=reg))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    callbacks = [early_stop] if early_stop is not None else None
    results = model.fit(
        X_t, y_t, epochs=epochs(100), batch_size=32, verbose=0, validation_data=(X_val, y_val), callbacks=callbacks
    )
    show(title, results, ("loss", "acc", "val_loss", "val_acc"))
    return results


def main(scale=1.0):
    global SCALE
    SCALE = scale
    X_t, X_val, X_test, y_t, y_val, y_test = binary_data()

    # Part 3 solution: relu 12-8-1 with rmsprop, batch 10 (the lesson fits it on all of X)
    model = Sequential()
    model.add(Dense(12, activation="relu", input_dim=64))
    model.add(Dense(8, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
    show("Part 3: relu + rmsprop, batch 10", model.fit(X_t, y_t, epochs=epochs(50), batch_size=10, verbose=0))

    np.random.seed(42)
    sigmoid_sgd(X_t, y_t, 100, 10, title="sigmoid + SGD, batch 100")
    sigmoid_sgd(X_t, y_t, 32, 50, title="sigmoid + SGD, batch 32")
    sigmoid_sgd(X_t, y_t, 1, 10, title="sigmoid + SGD, batch 1")
    sigmoid_sgd(X_t, y_t, 1, 10, optimizer=SGD(lr=0.02), title="sigmoid + SGD(lr=.02), batch 1")
    sigmoid_sgd(X_t, y_t, 10, 30, optimizer=SGD(lr=9), title="sigmoid + SGD(lr=9), batch 10: overshooting")

    relu_model(X_t, y_t, "SGD", 32, 50, title="relu + SGD, batch 32")
    relu_model(X_t, y_t, "SGD", 1, 10, title="relu + SGD, batch 1")
    relu_model(X_t, y_t, "adam", 32, 50, title="relu + adam, batch 32")
    relu_model(X_t, y_t, "adam", 32, 100, hidden=(12, 8, 4), title="relu 12-8-4 + adam")
    relu_model(X_t, y_t, "SGD", 32, 100, hidden=(12, 8, 4), title="relu 12-8-4 + SGD")
    relu_model(X_t, y_t, "adam", 32, 100, hidden=(12, 8, 4), title="with validation", validation_data=(X_val, y_val))

    deep_model(X_t=X_t, y_t=y_t, X_val=X_val, y_val=y_val, title="deeper: 30-20-12-12-12-8-4-1")
    np.random.seed(42)
    relu_model(X_t, y_t, "adam", 32, 100, hidden=(300, 200, 80, 4), title="wider: 300-200-80-4-1",
               validation_data=(X_val, y_val))
    deep_model(l2_layers=(1,), X_t=X_t, y_t=y_t, X_val=X_val, y_val=y_val, title="L2 on one layer")
    deep_model(l2_layers=(1, 2, 3, 4, 5, 6), X_t=X_t, y_t=y_t, X_val=X_val, y_val=y_val, title="L2 on all hidden layers")

    np.random.seed(42)
    model = Sequential()
    model.add(Dense(300, activation="relu", input_dim=64))
    model.add(Dropout(0.5))
    model.add(Dense(200, activation="relu"))
    model.add(Dropout(0.5))
    model.add(Dense(80, activation="relu"))
    model.add(Dropout(0.1))
    model.add(Dense(4, activation="relu"))
    model.add(Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    results = model.fit(X_t, y_t, epochs=epochs(100), batch_size=32, verbose=0, validation_data=(X_val, y_val))
    show("dropout", results, ("loss", "acc", "val_loss", "val_acc"))

    for patience in (0, 15):
        early_stop = EarlyStopping(monitor="val_loss", min_delta=1e-8, patience=patience, verbose=1, mode="min")
        deep_model(early_stop=early_stop, X_t=X_t, y_t=y_t, X_val=X_val, y_val=y_val,
                   title=f"early stopping, patience={patience}")

    # Multiclass classification and softmax
    digits = load_digits()
    X, y = digits.data, digits.target
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=42, test_size=0.2)
    X_t, X_val, y_t, y_val = train_test_split(X_train, y_train, random_state=42, test_size=0.2)
    X_t, X_val, X_test = X_t / 16, X_val / 16, X_test / 16
    ohe = OneHotEncoder(sparse_output=False)  # the lesson's `sparse=False` was renamed in scikit-learn 1.2
    y_t = ohe.fit_transform(y_t.reshape(-1, 1))
    y_val = ohe.transform(y_val.reshape(-1, 1))
    y_test = ohe.transform(y_test.reshape(-1, 1))

    model = Sequential()
    model.add(Dense(12, activation="relu", input_dim=64))
    model.add(Dense(8, activation="relu"))
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    results = model.fit(X_t, y_t, epochs=epochs(50), batch_size=10, validation_data=(X_val, y_val), verbose=0)
    show("softmax over 10 classes", results, ("loss", "acc", "val_loss", "val_acc"))

    y_hat_test = model.predict_classes(X_test)
    y_test = ohe.inverse_transform(y_test)
    matrix = confusion_matrix(y_test, y_hat_test)
    print("\nConfusion matrix on the test split (rows: true digit, columns: predicted):")
    print(matrix)
    print(f"test accuracy: {np.trace(matrix) / matrix.sum():.4f}")
    return matrix


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="multiply every epoch count (default 1.0)")
    main(parser.parse_args().epochs_scale)
