# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Backprop you can see
#
# The lesson's first real network, 64 → 12 (relu) → 8 (relu) → 1 (sigmoid), trained on the digits
# (odd or even?) with binary cross-entropy. This walkthrough takes **one batch of 32 images** and:
#
# 1. computes the forward pass and every gradient **by hand in NumPy**, the chain rule written out
#    layer by layer;
# 2. checks them against minitensor's `backward()`, against numerical differences (`gradcheck`),
#    against the one-step trace (`minitensor.trace`) and against tf.keras (`tf.GradientTape`);
# 3. draws the graph that `backward()` walks;
# 4. shows why the lesson moved from sigmoid to relu: the gradient flow of a deep sigmoid network
#    against a relu one.
#
# Open it as a notebook (`jupytext --to notebook examples/backprop.py`, or directly in VS Code,
# PyCharm or JupyterLab with jupytext) or run it as a script: `python examples/backprop.py`.
# Pictures are written to `backprop_output/` (or the folder in `$BACKPROP_OUTPUT`).
# Drawing needs `pip install "minitensor[viz]"` and Graphviz; the tf.keras cell needs TensorFlow.

# %%
import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import minitensor
from minitensor import Tensor, gradcheck, ops
from minitensor.layers import Dense, Input, keep_pre_activations
from minitensor.models import Sequential
from minitensor.optimizers import SGD

OUT = Path(os.environ.get("BACKPROP_OUTPUT", "backprop_output"))
OUT.mkdir(parents=True, exist_ok=True)
np.set_printoptions(precision=4, suppress=True)

# %% [markdown]
# ## The data and the model
#
# The lesson's split and scaling (pixels 0–16 divided by 16), the odd/even target, and the model
# built exactly as in the lesson. The batch is the first 32 training rows.

# %%
digits = load_digits()
X, y_digit = digits.data, digits.target
X_train, X_test, y_train, y_test = train_test_split(X, y_digit % 2, test_size=0.2, random_state=42)
X_t = (X_train / 16).astype("float32")
y_t = y_train.astype("float32")

minitensor.set_random_seed(42)
model = Sequential([
    Input(shape=(64,)),
    Dense(12, activation="relu", name="hidden_1"),
    Dense(8, activation="relu", name="hidden_2"),
    Dense(1, activation="sigmoid", name="output"),
])
model.compile(optimizer=SGD(learning_rate=0.01), loss="binary_crossentropy", metrics=["accuracy"])

x = X_t[:32]
y = y_t[:32, None]  # (32, 1), the shape of the output
W1, b1, W2, b2, W3, b3 = [w.astype(np.float64) for w in model.get_weights()]
print("batch", x.shape, "| weights", [w.shape for w in model.get_weights()])

# %% [markdown]
# ## Forward, by hand
#
# For each layer, the **pre-activation** `z = a_prev @ W + b` and the **activation** `a = f(z)`.
# The loss is the mean binary cross-entropy. Computed from the logits `z3`, as Keras does, it is
# `max(z, 0) - z·y + log(1 + exp(-|z|))`, which never takes the log of 0.

# %%
x64, y64 = x.astype(np.float64), y.astype(np.float64)
z1 = x64 @ W1 + b1
a1 = np.maximum(z1, 0)
z2 = a1 @ W2 + b2
a2 = np.maximum(z2, 0)
z3 = a2 @ W3 + b3
a3 = 1 / (1 + np.exp(-z3))
loss_by_hand = np.mean(np.maximum(z3, 0) - z3 * y64 + np.log1p(np.exp(-np.abs(z3))))
print(f"loss by hand: {loss_by_hand:.6f}")

# %% [markdown]
# ## Backward, by hand: the chain rule, layer by layer
#
# Call **delta** the gradient of the loss with respect to a layer's pre-activation, `δ = dL/dz`.
#
# * Output layer: for sigmoid followed by binary cross-entropy the derivative simplifies to
#   `δ3 = (a3 - y) / n` (the `1/n` comes from the mean over the batch).
# * Weights of any layer: `dW = a_prevᵀ @ δ` and `db = Σ_rows δ`.
# * One layer down: `δ_prev = (δ @ Wᵀ) * f'(z_prev)`, with `relu'(z) = 1 if z > 0 else 0`.

# %%
n = len(x64)
d3 = (a3 - y64) / n
dW3, db3 = a2.T @ d3, d3.sum(axis=0)
d2 = (d3 @ W3.T) * (z2 > 0)
dW2, db2 = a1.T @ d2, d2.sum(axis=0)
d1 = (d2 @ W2.T) * (z1 > 0)
dW1, db1 = x64.T @ d1, d1.sum(axis=0)
by_hand = [dW1, db1, dW2, db2, dW3, db3]
for name, g in zip(["dW1", "db1", "dW2", "db2", "dW3", "db3"], by_hand):
    print(f"{name} {str(g.shape):8s} norm {np.linalg.norm(g):.5f}")


# %% [markdown]
# ## Check 1: minitensor's `backward()`
#
# `model.compute_loss(x, y)` is exactly the scalar `fit` minimizes for this batch (with any L2
# penalties, here none). Its `backward()` fills each weight's `.grad`. minitensor computes in
# float32, the hand computation in float64: they agree to float32 round-off.

# %%
def largest_relative_difference(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


for w in model.weights:
    w.grad[...] = 0
loss = model.compute_loss(x, y)
loss.backward()
print(f"loss: minitensor {loss.item():.6f}, by hand {loss_by_hand:.6f}")
for w, g in zip(model.weights, by_hand):
    print(f"{w.name:16s} largest relative difference {largest_relative_difference(w.grad, g):.1e}")
    assert largest_relative_difference(w.grad, g) < 1e-5

# %% [markdown]
# ## Check 2: numerical gradients (`gradcheck`)
#
# The same network written with minitensor ops as a function of its six weights, in float64.
# `gradcheck` compares the gradient `backward()` gives with central differences
# `(L(w + ε) - L(w - ε)) / 2ε`, entry by entry; then the hand gradients are compared with it.

# %%
def network_loss(W1, b1, W2, b2, W3, b3):
    h = ops.relu(ops.relu(Tensor(x64) @ W1 + b1) @ W2 + b2)
    z = h @ W3 + b3
    return ops.sigmoid_cross_entropy_with_logits(y64, z).mean()  # (labels, logits), as TensorFlow


weights64 = [Tensor(w.copy(), requires_grad=True) for w in (W1, b1, W2, b2, W3, b3)]
print("gradcheck:", gradcheck(network_loss, weights64))
network_loss(*weights64).backward()
for t, g in zip(weights64, by_hand):
    np.testing.assert_allclose(t.grad, g, rtol=1e-10, atol=1e-14)
print("float64 backward() equals the hand gradients to 1e-10")

# %% [markdown]
# ## Check 3: the one-step trace
#
# `minitensor.trace.trace_step` runs one training step as `fit` would and returns every layer's
# input, pre-activation, activation, delta, weight gradients and the update SGD would apply —
# without changing the model. `print` shows a table of shapes and norms. (`updates` are new
# minus old weights in float32, so a step far below a weight's precision shows rounded.)

# %%
from minitensor.trace import trace_step

trace = trace_step(model, x, y)
print(trace)
for layer, (z, a, d) in zip(trace, [(z1, a1, d1), (z2, a2, d2), (z3, a3, d3)]):
    assert largest_relative_difference(layer.pre_activation, z) < 1e-5
    assert largest_relative_difference(layer.activation, a) < 1e-5
    assert largest_relative_difference(layer.delta, d) < 1e-5
    # plain SGD: the new weights are w - learning_rate × gradient, in float32
    expected = layer.weights["kernel"] - np.float32(0.01) * layer.gradients["kernel"]
    np.testing.assert_array_equal(layer.weights_after["kernel"], expected)
print("the trace's pre-activations, activations and deltas are the hand ones")
print("delta of hidden_2 for the first 3 images:\n", trace["hidden_2"].delta[:3])

# %% [markdown]
# ## Check 4: tf.keras
#
# The same model in tf.keras, with the same weights, and `tf.GradientTape` over the same batch.

# %%
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

keras_model = keras.Sequential([
    keras.Input(shape=(64,)),
    keras.layers.Dense(12, activation="relu"),
    keras.layers.Dense(8, activation="relu"),
    keras.layers.Dense(1, activation="sigmoid"),
])
keras_model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="binary_crossentropy")
keras_model.set_weights(model.get_weights())
with tf.GradientTape() as tape:
    keras_loss = keras_model.compute_loss(x=x, y=y, y_pred=keras_model(x, training=True))
keras_grads = tape.gradient(keras_loss, keras_model.trainable_weights)
print(f"loss: tf.keras {float(keras_loss):.6f}, minitensor {loss.item():.6f}")
for w, g in zip(model.weights, keras_grads):
    print(f"{w.name:16s} largest relative difference to tf.keras {largest_relative_difference(w.grad, np.asarray(g)):.1e}")
    assert largest_relative_difference(w.grad, np.asarray(g)) < 1e-5

# %% [markdown]
# ## The graph `backward()` walks
#
# Every tensor remembers the op that made it (`tensor.op`) and its inputs (`tensor.inputs`).
# `minitensor.viz.to_dot` writes that graph in Graphviz's language and `draw` renders it.
# A relu `Dense` layer normally runs as one fused op; inside `keep_pre_activations()` it shows
# its pre-activation as a tensor of its own (the same numbers). With `show_grad=True` each weight
# shows its gradient, and so does any tensor that called `retain_grad()`.

# %%
from minitensor.trace import named_tensors
from minitensor.utils import plot_model
from minitensor.viz import draw

with keep_pre_activations():
    loss = model.compute_loss(x, y)
z2_tensor = named_tensors(loss)["hidden_2/pre_activation"]
z2_tensor.retain_grad()
for w in model.weights:
    w.grad[...] = 0
loss.backward()
assert largest_relative_difference(z2_tensor.grad, d2) < 1e-5  # retain_grad shows delta 2
print("graph:", draw(loss, OUT / "graph.svg", show_grad=True))
plot_model(model, to_file=OUT / "model.png", show_shapes=True, show_layer_names=True)
print("model:", OUT / "model.png")

# %% [markdown]
# ## Why relu: gradient flow in a deep network
#
# The lesson's deep model (30-20-12-12-12-8-4-1) with sigmoid hidden layers and with relu ones.
# `GradientFlow` records the gradient norm of every layer's kernel on a fixed batch while the
# model trains. With sigmoid, each layer multiplies the backpropagated delta by `σ'(z) ≤ 1/4`:
# the layers near the input get gradients thousands of times smaller than the output layer and
# barely learn. relu passes the delta through unchanged wherever a unit is active.

# %%
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from minitensor.gradient_flow import GradientFlow, plot_gradient_flow  # noqa: E402

fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
first_layer_ratio = {}
for ax, activation in zip(axes, ["sigmoid", "relu"]):
    minitensor.set_random_seed(0)
    deep = Sequential([Input(shape=(64,))] + [Dense(u, activation=activation) for u in (30, 20, 12, 12, 12, 8, 4)]
                      + [Dense(1, activation="sigmoid")])
    deep.compile(optimizer=SGD(learning_rate=0.01), loss="binary_crossentropy")
    flow = GradientFlow(X_t[:256], y_t[:256], every=12)
    deep.fit(X_t, y_t, batch_size=32, epochs=2, verbose=0, callbacks=[flow])
    plot_gradient_flow(flow, ax=ax)
    ax.set_title(f"{activation} hidden layers")
    norms = [record["grad_norm"][0] for record in flow.history.values()]
    first_layer_ratio[activation] = norms[0] / norms[-1]
fig.tight_layout()
fig.savefig(OUT / "gradient_flow.png", dpi=100)
for activation, ratio in first_layer_ratio.items():
    print(f"{activation}: first layer's gradient / last layer's at the start = {ratio:.2g}")
assert first_layer_ratio["sigmoid"] < first_layer_ratio["relu"]
