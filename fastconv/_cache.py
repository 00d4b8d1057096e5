"""Where fastconv keeps what it compiles, and the rules for trusting it.

The directory is ``$FASTCONV_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/fastconv``, else
``~/.cache/fastconv`` (``%LOCALAPPDATA%\\fastconv`` on Windows): per user, never inside the
installed package, so a read-only install, ``pip uninstall`` and several virtual environments all
behave. Numba's compiled kernels go to ``numba/fastconv-<version>-numba-<version>/`` below it: an
upgrade of either package never even opens files written by the other (Numba also compares a hash
of each kernel file's source). ``FASTCONV_NUMBA_CACHE=0`` keeps everything in memory.

Two failures never stop a call. A directory that cannot be created or written: the kernels are
compiled in memory for this process (logged once). A damaged file (a truncated write, a flipped
byte, junk): every pickle written here is preceded by its SHA-256, checked before anything is
unpickled, so a damaged index or data file is refused, deleted, compiled again and rewritten, with
a ``RuntimeWarning`` naming the file. Numba's own cache classes are extended, not its global
configuration changed: other Numba code in the process keeps its own cache settings.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import sys
import warnings
from pathlib import Path

_log = logging.getLogger("fastconv")

DIR_ENV = "FASTCONV_CACHE_DIR"
NUMBA_ENV = "FASTCONV_NUMBA_CACHE"  # "0": compile in memory only


def cache_dir() -> Path:
    """fastconv's per-user cache directory (not created here)."""
    if os.environ.get(DIR_ENV):
        return Path(os.environ[DIR_ENV]).expanduser()
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "fastconv"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"  # XDG: relative is invalid
    return base / "fastconv"


def numba_enabled() -> bool:
    """Whether compiled Numba kernels are kept on disk at all (``FASTCONV_NUMBA_CACHE=0``: no)."""
    return os.environ.get(NUMBA_ENV, "1") != "0"


def numba_dir() -> Path:
    """The versioned directory of the compiled kernels: one per fastconv and numba version."""
    import numba

    version = getattr(sys.modules.get("fastconv"), "__version__", "unknown")
    return cache_dir() / "numba" / f"fastconv-{version}-numba-{numba.__version__}"


def attach_numba_cache(dispatcher) -> bool:
    """Give a ``numba.njit(cache=False)`` dispatcher fastconv's on-disk cache; False (and the
    dispatcher left compiling in memory) when the directory is not usable."""
    if not numba_enabled():
        return False
    try:
        dispatcher._cache = _numba_classes()[0](dispatcher.py_func)
    except OSError as exc:
        _unusable(str(exc))
        return False
    return True


@functools.cache
def _unusable(reason: str) -> None:
    """Logged once per reason: the kernels still work, compiled in memory by every process."""
    _log.info("fastconv: compiled kernels are not cached on disk (%s); each process compiles them", reason)


class DamagedCacheFile(Exception):
    """A cache file whose content does not match the digest written with it."""


def _checked(data: bytes, path: str):
    """Unpickle ``data`` (a SHA-256 digest, then a pickle) once the digest matches."""
    digest, body = data[:32], data[32:]
    if len(data) < 32 or hashlib.sha256(body).digest() != digest:
        raise DamagedCacheFile(f"{path}: digest mismatch ({len(data)} bytes)")
    return pickle.loads(body)


@functools.cache
def _package_stamp(directory: str) -> str:
    """A digest of every Python module in ``directory`` (the kernels' package)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _numba_classes():
    """Numba's FunctionCache, with fastconv's directory, digests and damage handling (built on
    first use: importing this module must not import numba)."""
    from numba.core import caching

    class Locator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
        # The source file's hash as the stamp (the mixin), the versioned directory as the place.
        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = str(numba_dir() / self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self):
            return self._cache_path

        def get_source_stamp(self):
            # A kernel's code also holds the constants it reads from the package's other modules
            # (the register tiles' rows, say), frozen when compiled: those modules are stamped too.
            return super().get_source_stamp(), _package_stamp(os.path.dirname(self._py_file))

    class Impl(caching.CompileResultCacheImpl):
        # The only locator tried; its from_function returns None when the directory cannot be
        # made or written, and CacheImpl then raises RuntimeError.
        _locator_classes = [Locator]

    class CheckedFile(caching.IndexDataCacheFile):
        def _dump(self, obj):
            body = super()._dump(obj)
            return hashlib.sha256(body).digest() + body

        def _load_index(self):
            # numba's, with the digest checked before unpickling
            try:
                with open(self._index_path, "rb") as f:
                    version = pickle.load(f)
                    data = f.read()
            except FileNotFoundError:
                return {}
            if version != self._version:
                return {}
            stamp, overloads = _checked(data, self._index_path)
            return overloads if stamp == self._source_stamp else {}

        def _load_data(self, name):
            path = self._data_path(name)
            with open(path, "rb") as f:
                return _checked(f.read(), path)

        def remove(self):
            """Delete the index and every data file of this function."""
            base = self._index_name[:-len(".nbi")]
            for path in Path(self._cache_path).glob(f"{base}*"):
                try:
                    path.unlink()
                except OSError:
                    pass

    class Cache(caching.FunctionCache):
        _impl_class = Impl

        def __init__(self, py_func):
            try:
                super().__init__(py_func)
            except RuntimeError as exc:  # "no locator available": the directory is not writable
                raise OSError(f"{numba_dir()} is not writable") from exc
            old = self._cache_file
            self._cache_file = CheckedFile(old._cache_path, old._index_name[:-len(".nbi")], old._source_stamp)

        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception as exc:  # noqa: BLE001 - any damage (UnpicklingError, EOFError, ...)
                self._damaged(exc)
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except OSError as exc:  # disk full, permissions changed: this process keeps its copy
                _unusable(str(exc))
            except Exception as exc:  # noqa: BLE001 - the index it extends was damaged
                self._damaged(exc)
                try:
                    super().save_overload(sig, data)
                except Exception as again:  # noqa: BLE001
                    _unusable(str(again))

        def _damaged(self, exc):
            warnings.warn(f"fastconv: ignoring a damaged compiled-kernel cache for {self._py_func.__name__} "
                          f"in {self._cache_path} ({type(exc).__name__}: {exc}); compiling it again",
                          RuntimeWarning, stacklevel=2)
            self._cache_file.remove()

    return Cache, CheckedFile


# -- `fastconv warmup`: fill the cache ahead of time (Docker images, CI caches) -------------------

WARMUP_HELP = "compile every backend's kernels now, into the cache (for Docker images and CI caches)"
WARMUP_DESCRIPTION = ("Compile (or load) the kernels of every installed backend for float32 and float64, "
                      "with a line per step, so that no later process compiles on first use. The cache "
                      "directory is $FASTCONV_CACHE_DIR, else $XDG_CACHE_HOME/fastconv or ~/.cache/fastconv.")


def warmup_flags(p) -> None:
    p.add_argument("--dtype", choices=("float32", "float64", "both"), default="both", help="default: both")


def cmd_warmup(parser, args) -> int:
    """``fastconv warmup``: each backend's ``warmup`` per dtype, a progress line per step."""
    import time

    import numpy as np

    from . import backends

    def say(text):
        print(text, flush=True)

    say(f"cache: {numba_dir() if numba_enabled() else 'none (FASTCONV_NUMBA_CACHE=0): nothing is kept'}"
        if "numba" in backends.available() else f"cache: {cache_dir()}")
    start = time.perf_counter()
    for name in backends.available():
        module = backends.get(name)
        for dtype in ("float32", "float64") if args.dtype == "both" else (args.dtype,):
            t0 = time.perf_counter()
            steps = getattr(module, "warmup_steps", None)
            if steps is None:
                module.warmup(np.dtype(dtype))
            else:
                say(f"{name} {dtype}: compiling (or loading) {len(module.WARMUP_STEPS)} steps...")
                for i, label in enumerate(steps(dtype), 1):
                    say(f"  [{i}/{len(module.WARMUP_STEPS)}] {label}: {time.perf_counter() - t0:.1f} s")
            say(f"{name} {dtype}: done in {time.perf_counter() - t0:.1f} s")
    if "numba" not in backends.available():
        say("numba is not installed, so nothing needs compiling (pip install 'fastconv[numba]' adds it)")
    say(f"warmup done in {time.perf_counter() - start:.1f} s")
    return 0
