"""compare.engines with the minitensor engine only (no TensorFlow): building, training, recording."""

import dataclasses

import numpy as np
import pytest

from compare.engines import batch_order, build_model, train, training_arrays
from compare.experiments import ALL, EXPERIMENTS, DenseSpec
from compare.parity import step_divergence


def test_batch_order_is_a_seeded_permutation():
    a, b = batch_order(1149, 5), batch_order(1149, 5)
    np.testing.assert_array_equal(a, b)
    assert sorted(a.tolist()) == list(range(1149))
    assert not np.array_equal(a, batch_order(1149, 6))


def test_training_arrays():
    x, y = training_arrays(EXPERIMENTS["rmsprop-b10"])
    assert x.shape == (1797, 64) and x.max() == 16.0 and y.shape == (1797,)
    x, y = training_arrays(EXPERIMENTS["softmax"])
    assert x.shape == (1149, 64) and y.shape == (1149, 10)


@pytest.mark.parametrize("experiment", ALL, ids=lambda e: e.name)
def test_every_experiment_builds_in_minitensor(experiment):
    model = build_model(experiment, "minitensor")
    shapes = [w.shape for w in model.get_weights()]
    dense = [layer for layer in experiment.layers if isinstance(layer, DenseSpec)]
    widths = [64] + [layer.units for layer in dense]
    expected = [s for i, o in zip(widths, widths[1:]) for s in ((i, o), (o,))]
    assert shapes == expected


def test_train_records_history_timing_and_steps():
    experiment = dataclasses.replace(EXPERIMENTS["softmax"], epochs=2)
    order = batch_order(1149, 0)
    seen = []
    run, start = train(experiment, "minitensor", seed=0, order=order, record_steps=True,
                       progress=lambda *args: seen.append(args))
    assert run.epochs_run == 2 and len(run.epoch_seconds) == 2
    assert set(run.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert [len(s) for s in run.step_losses] == [115, 115] and run.steps_per_epoch == 115
    # Keras logs the running mean of the epoch, so the epoch's last logged loss is the epoch loss
    assert run.step_losses[0][-1] == pytest.approx(run.history["loss"][0], rel=1e-6)
    assert run.confusion.shape == (10, 10) and run.confusion.sum() == 360
    assert seen == [("minitensor", 0, 1, 2), ("minitensor", 0, 2, 2)]
    assert [w.shape for w in start] == [w.shape for w in run.final_weights]


def test_initial_weights_are_loaded():
    experiment = dataclasses.replace(EXPERIMENTS["relu-adam"], epochs=1)
    _, own = train(experiment, "minitensor", seed=1)
    given = [np.full_like(w, 0.01) for w in own]
    _, start = train(experiment, "minitensor", seed=1, initial_weights=given)
    for a, b in zip(given, start):
        np.testing.assert_array_equal(a, b)


def test_nudged_run_parts_after_the_first_step_and_stops():
    experiment = dataclasses.replace(EXPERIMENTS["lr-9"], epochs=3)
    order = batch_order(1149, 2)
    plain, start = train(experiment, "minitensor", seed=2, order=order, record_steps=True)
    nudged, _ = train(experiment, "minitensor", seed=2, order=order, initial_weights=start, record_steps=True,
                      nudge_seed=2, nudge_reference=plain.step_losses)
    # the first step's loss comes before any nudge
    assert nudged.step_losses[0][0] == plain.step_losses[0][0]
    parting = step_divergence(plain.step_losses, nudged.step_losses, 1e-5)
    assert parting["first_step_over"] is not None  # learning rate 9 parts within 3 epochs
    # the nudged run asks to stop at the step it parts; Keras stops there, minitensor (so far) at
    # the end of that epoch
    parted_in_epoch = parting["first_step_over_epoch"]
    assert nudged.epochs_run == parted_in_epoch < 3
