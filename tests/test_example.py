"""The digits example's training loop, on a few batches: the loss must go down."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the example needs scikit-learn: pip install 'fastconv[examples]'")

_PATH = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"
_spec = importlib.util.spec_from_file_location("train_digits", _PATH)
train_digits = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_digits)


def test_loss_goes_down_in_a_few_batches(backend):
    history = train_digits.train(epochs=1, batch_size=32, max_batches=20, backend=backend, log=None)
    losses = history["loss"]
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert history["model"].conv.grad_weight is not None


def test_one_epoch_logs_progress_and_learns():
    lines = []
    history = train_digits.train(epochs=1, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("epoch  1/1")
    assert history["test_acc"][0] > 0.6
