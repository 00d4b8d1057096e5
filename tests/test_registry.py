"""The registry: names, availability, and no silent skips of required backends."""

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastconv
from conftest import required_backends
from fastconv import backends
from fastconv.geometry import Geometry


def test_required_backends_are_available():
    missing = required_backends() - set(fastconv.backends())
    assert not missing, f"required backends {sorted(missing)} are missing: their tests were skipped"


def test_backends_lists_real_backends_only():
    names = fastconv.backends()
    assert "reference" in names and "auto" not in names
    assert names == [n for n in backends.NAMES if n in names]


def test_every_available_backend_has_the_contract():
    """The contract of the registry's docstring, as ``backends.CONTRACT`` states it, checked on the code."""
    for name in fastconv.backends():
        module = backends.get(name)
        assert module.NAME == name
        for fn, params in backends.CONTRACT.items():
            signature = inspect.signature(getattr(module, fn))
            assert tuple(signature.parameters) == params, (name, fn, signature)
        assert inspect.signature(module.forward).parameters["bias"].default is None, name
        for fn, params in backends.OPTIONAL.items():
            optional = getattr(module, fn, None)
            assert optional is None or tuple(inspect.signature(optional).parameters) == params, (name, fn)
        assert hasattr(module, "whole_choices") == hasattr(module, "choosing_as"), name  # a pair


def test_the_docstring_states_the_contract_the_test_checks():
    for fn, params in {**backends.CONTRACT, **backends.OPTIONAL}.items():
        shown = ", ".join(p if p != "bias" else "bias=None" for p in params)
        assert f"def {fn}({shown}):" in backends.__doc__, fn


@pytest.fixture
def toy(monkeypatch):
    """The toy backend of tests/toy/toy3x3.py (3x3 kernels only) added by one registry line."""
    monkeypatch.setitem(backends._MODULES, "toy3x3", "tests.toy.toy3x3")
    monkeypatch.setattr(backends, "NAMES", (*backends.NAMES, "toy3x3"))
    monkeypatch.delenv(backends.AUTO_MEASURE_ENV, raising=False)
    return backends.get("toy3x3")


def test_a_partial_backend_runs_what_it_supports(toy):
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    assert "toy3x3" in fastconv.backends()
    np.testing.assert_allclose(fastconv.conv2d(x, w, b, padding=1, backend="toy3x3"),
                               fastconv.conv2d(x, w, b, padding=1, backend="reference"))
    g = fastconv.conv2d_backward(np.ones((2, 4, 6, 6)), x, w, padding=1, backend="toy3x3")
    want = fastconv.conv2d_backward(np.ones((2, 4, 6, 6)), x, w, padding=1, backend="reference")
    for got, expected in zip(g, want):
        np.testing.assert_allclose(got, expected)


def test_a_partial_backend_refuses_the_rest_before_any_work(toy, monkeypatch):
    def fail(*args):
        raise AssertionError("no work may start on a refused call")
    for fn in ("forward", "grad_input", "grad_weight"):
        monkeypatch.setattr(toy, fn, fail)
    x, w = np.zeros((1, 3, 6, 6)), np.zeros((4, 3, 5, 5))
    with pytest.raises(ValueError, match=r"conv2d: backend 'toy3x3' does not support this call: 2-D 3x3 kernels only"):
        fastconv.conv2d(x, w, backend="toy3x3")
    with pytest.raises(ValueError, match=r"conv1d_backward: backend 'toy3x3' does not support this call"):
        fastconv.conv1d_backward(np.zeros((1, 4, 4)), np.zeros((1, 3, 6)), np.zeros((4, 3, 3)), backend="toy3x3")


def test_auto_considers_a_partial_backend_only_where_it_supports_the_call(toy, monkeypatch, tmp_path):
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path))  # no measured choices saved by earlier runs
    three = Geometry.from_args((1, 3, 6, 6), (4, 3, 3, 3), padding=1)
    five = Geometry.from_args((1, 3, 6, 6), (4, 3, 5, 5), padding=2)
    assert "toy3x3" in backends.candidates(three, np.float64)
    assert "toy3x3" not in backends.candidates(five, np.float64)
    monkeypatch.setattr(backends, "available", lambda: ["reference", "toy3x3"])
    assert backends.choose(three, np.float64) == "toy3x3"  # before the reference, with no rule naming it
    assert backends.choose(five, np.float64) == "reference"
    other = next(name for name in backends.NAMES[:3] if name != "reference" and backends._load(name))
    monkeypatch.setenv(backends.AUTO_MEASURE_ENV, "measure")
    monkeypatch.setattr(backends, "available", lambda: ["reference", other, "toy3x3"])
    timed = []
    real = backends.get

    def spy(name):
        timed.append(name)
        return real(name)
    monkeypatch.setattr(backends, "get", spy)
    monkeypatch.setattr(backends, "_measured", {})
    backends.choose(three, np.float64)
    assert {other, "toy3x3"} <= set(timed)  # measured beside the others


def test_an_installed_package_registers_a_backend_through_an_entry_point(tmp_path):
    """A package that declares ``[fastconv.backends] toy3x3 = toy3x3`` is seen with no edit here."""
    (tmp_path / "toy3x3.py").write_text((Path(__file__).parent / "toy" / "toy3x3.py").read_text())
    info = tmp_path / "toy3x3-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy3x3\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{backends.ENTRY_POINT_GROUP}]\ntoy3x3 = toy3x3\n")
    code = ("import numpy as np, fastconv; print(fastconv.backends()); "
            "print(fastconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 3, 3)), backend='toy3x3').item())")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parents[1])])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert "'toy3x3'" in out.splitlines()[0] and out.splitlines()[1] == "9.0"
    # ... and benchmarked beside the built-in backends, refused (and said so) where it does not apply
    shapes = ["--shape", "n=1 c=2 size=6x6 k=2 kernel=3x3 pad=1", "--shape", "n=1 c=2 size=6x6 k=2 kernel=5x5 pad=2"]
    bench = subprocess.run([sys.executable, "-m", "fastconv", "bench", "--backends", "toy3x3,reference", *shapes,
                            "--repeat", "1", "--no-progress", "--pass", "forward"],
                           capture_output=True, text=True, env={**env, "COLUMNS": "200"})
    assert bench.returncode == 0, bench.stderr
    assert "Not timed on every shape: toy3x3: 2-D 3x3 kernels only" in bench.stdout
    assert bench.stdout.count("│ toy3x3") == 1  # timed on the 3x3 shape, not on the 5x5 one


def test_import_fastconv_imports_neither_torch_nor_numba():
    code = "import sys, fastconv; print(sorted(m for m in ('torch', 'numba') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
