"""Precision levels (API.md): the setting, its scope, and that backends and auto see it."""

import threading

import numpy as np
import pytest

import fastconv
from fastconv import backends
from fastconv.geometry import Geometry


def test_default_set_and_context():
    assert fastconv.get_precision() == "highest"
    try:
        fastconv.set_precision("high")
        assert fastconv.get_precision() == "high"
        with fastconv.precision("highest"):
            assert fastconv.get_precision() == "highest"
        assert fastconv.get_precision() == "high"
    finally:
        fastconv.set_precision("highest")


@pytest.mark.parametrize("call", [lambda: fastconv.set_precision("low"),
                                  lambda: fastconv.precision("fast").__enter__()])
def test_unknown_levels_are_refused(call):
    with pytest.raises(ValueError, match=r"`level` must be one of 'highest', 'high'"):
        call()


def test_a_block_in_one_thread_leaves_the_others_alone():
    seen, inside, release = [], threading.Event(), threading.Event()

    def other():
        with fastconv.precision("high"):
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(5)
    seen.append(fastconv.get_precision())
    release.set()
    thread.join()
    assert seen == ["highest"]


def test_backends_and_auto_are_asked_at_the_current_level(monkeypatch):
    asked = []
    reference = backends.get("reference")
    monkeypatch.setattr(reference, "supports", lambda geom, dtype, precision: asked.append(precision))
    monkeypatch.setattr(backends, "available", lambda: ["reference"])
    geom = Geometry.from_args((1, 1, 5, 5), (1, 1, 3, 3))
    with fastconv.precision("high"):
        backends.choose(geom, np.dtype(np.float32))
        fastconv.conv2d(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), backend="reference")
    assert asked == ["high", "high"]
