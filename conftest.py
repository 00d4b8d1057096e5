"""Shared by tests/ and bench/: the `backend` fixture runs a test body once per registered backend."""

import os

import pytest

from fastconv import backends


@pytest.fixture(params=backends.NAMES)
def backend(request):
    if request.param not in backends.available():
        pytest.skip(f"backend {request.param!r} is not installed")
    return request.param


def required_backends() -> set[str]:
    """Backends whose absence fails the suite instead of skipping it (CI requires them all)."""
    return set(filter(None, os.environ.get("FASTCONV_REQUIRE", "reference").split(",")))
