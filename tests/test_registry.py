"""The registry: names, availability, and no silent skips of required backends."""

import subprocess
import sys

import fastconv
from conftest import required_backends
from fastconv import backends


def test_required_backends_are_available():
    missing = required_backends() - set(fastconv.backends())
    assert not missing, f"required backends {sorted(missing)} are missing: their tests were skipped"


def test_backends_lists_real_backends_only():
    names = fastconv.backends()
    assert "reference" in names and "auto" not in names
    assert names == [n for n in backends.NAMES if n in names]


def test_every_available_backend_has_the_contract():
    for name in fastconv.backends():
        module = backends.get(name)
        assert module.NAME == name
        for fn in ("forward", "grad_input", "grad_weight", "warmup"):
            assert callable(getattr(module, fn)), (name, fn)


def test_import_fastconv_imports_neither_torch_nor_numba():
    code = "import sys, fastconv; print(sorted(m for m in ('torch', 'numba') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
