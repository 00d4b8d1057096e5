"""The cache directory rules (fastconv/_cache.py; issues 13 item 2 and 15 item 4).

Where compiled kernels go, that nothing lands inside the package, that a version change never
loads what another version wrote, that an unwritable directory and damaged files never stop a
call. Process-level rules run in subprocesses with a temporary cache directory, on one small
kernel (``_packed_dims``) so that each compile takes well under a second.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastconv import _cache

ROOT = Path(__file__).resolve().parents[1]


def test_directory_follows_the_environment(monkeypatch, tmp_path):
    for name in ("FASTCONV_CACHE_DIR", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if sys.platform != "win32":
        assert _cache.cache_dir() == tmp_path / "home" / ".cache" / "fastconv"
        monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # not absolute: ignored, as XDG says
        assert _cache.cache_dir() == tmp_path / "home" / ".cache" / "fastconv"
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert _cache.cache_dir() == tmp_path / "xdg" / "fastconv"
    monkeypatch.setenv("FASTCONV_CACHE_DIR", str(tmp_path / "mine"))
    assert _cache.cache_dir() == tmp_path / "mine"
    assert _cache.numba_enabled()
    monkeypatch.setenv("FASTCONV_NUMBA_CACHE", "0")
    assert not _cache.numba_enabled()


def _numba():
    return pytest.importorskip("numba")


_KERNEL = """
    import sys, warnings
    {before}
    from fastconv.backends import _numba_kernels as k
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = k._packed_dims(6, 5, 3, 3, 2, 1, 1, 1)
    stats = k._packed_dims.stats
    damaged = sum("damaged" in str(w.message) for w in caught)
    print(list(result), sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), damaged)
"""


def _kernel(cache, before="", cwd=ROOT, **env) -> tuple:
    """Run the kernel in a fresh process: (result, cache hits, misses, damage warnings)."""
    inherited = {k: v for k, v in os.environ.items() if k != "FASTCONV_NUMBA_CACHE"}
    env = dict(inherited, FASTCONV_CACHE_DIR=str(cache), **env)
    code = textwrap.dedent(_KERNEL).format(before=before)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    *result, hits, misses, damaged = proc.stdout.replace("[", "").replace("]", "").replace(",", "").split()
    return result, int(hits), int(misses), int(damaged)


def _files(cache, pattern):
    return sorted(Path(cache).rglob(pattern))


def test_kernels_go_to_the_versioned_directory_and_are_loaded_from_it(tmp_path):
    numba = _numba()
    in_package = {(p, p.stat().st_mtime_ns) for p in _files(ROOT / "fastconv", "*.nb[ic]")}  # older runs'
    first = _kernel(tmp_path)
    assert first[1:] == (0, 1, 0)
    import fastconv

    versioned = tmp_path / "numba" / f"fastconv-{fastconv.__version__}-numba-{numba.__version__}"
    assert _files(tmp_path, "*.nbi") and all(versioned in p.parents for p in _files(tmp_path, "*") if p.is_file())
    now = {(p, p.stat().st_mtime_ns) for p in _files(ROOT / "fastconv", "*.nb[ic]")}
    assert now <= in_package, "a kernel was cached inside the package"
    assert _kernel(tmp_path) == (first[0], 1, 0, 0)  # loaded, not compiled


def test_numba_cache_off_writes_nothing(tmp_path):
    _numba()
    result, hits, misses, _ = _kernel(tmp_path, FASTCONV_NUMBA_CACHE="0")
    assert (hits, misses) == (0, 1) and not _files(tmp_path, "*")


@pytest.mark.parametrize("change", ["fastconv", "numba"])
def test_a_version_change_never_loads_the_other_versions_code(tmp_path, change):
    _numba()
    result = _kernel(tmp_path)[0]
    patch = {"fastconv": "import fastconv; fastconv.__version__ = '99.0'",
             "numba": "import numba; numba.__version__ = '0.0.99'"}[change]
    assert _kernel(tmp_path, patch) == (result, 0, 1, 0)  # compiled again, into its own directory
    assert len(list((tmp_path / "numba").iterdir())) == 2
    assert _kernel(tmp_path, patch) == (result, 1, 0, 0)


def test_a_change_to_another_module_of_the_kernels_compiles_them_again(tmp_path):
    # A kernel's compiled code holds the constants it reads from other modules (the register
    # tiles' rows: 8 with AVX-512, 6 with AVX2), so a cache written before such a module changed
    # must not be loaded after, though the kernel's own file is the same.
    _numba()
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "fastconv", copy / "fastconv", ignore=shutil.ignore_patterns("__pycache__", "*.nb[ic]"))
    cache = tmp_path / "cache"
    result = _kernel(cache, cwd=copy)[0]
    assert _kernel(cache, cwd=copy) == (result, 1, 0, 0)
    other = copy / "fastconv" / "backends" / "_numba_gemm.py"
    other.write_text(other.read_text() + "\n# changed\n")
    assert _kernel(cache, cwd=copy) == (result, 0, 1, 0)
    assert _kernel(cache, cwd=copy) == (result, 1, 0, 0)


def test_an_unwritable_directory_compiles_in_memory(tmp_path):
    _numba()
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a directory cannot be made below a file, whoever runs the test
    result, hits, misses, damaged = _kernel(blocked / "cache")
    assert (hits, misses, damaged) == (0, 1, 0) and result == _kernel(tmp_path / "ok")[0]


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) * 2 // 3] ^= 0x5A
    path.write_bytes(bytes(data))


def _junk(path):
    path.write_bytes(b"\x80\x04not a pickle at all" * 3)


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte, _junk])
@pytest.mark.parametrize("which", ["*.nbi", "*.nbc"])
def test_a_damaged_file_is_ignored_rebuilt_and_warned_about(tmp_path, which, damage):
    _numba()
    result = _kernel(tmp_path)[0]
    (path,) = _files(tmp_path, f"_numba_kernels._packed_dims-*{which[1:]}")
    damage(path)
    assert _kernel(tmp_path) == (result, 0, 1, 1)  # compiled again, with a warning
    assert _kernel(tmp_path) == (result, 1, 0, 0)  # and the rebuilt entry loads
