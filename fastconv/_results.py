"""Saved runs: the JSON that ``fastconv bench --json`` writes and ``fastconv compare`` reads, and the
same run in pytest-benchmark's format (``--pytest-benchmark``).

A run records when (UTC time), where (CPU, cores, BLAS libraries and their threads, the thread
environment variables, numba's threading layer), what (fastconv, numpy, numba, torch, scipy
versions; the git commit of fastconv's source and of the working directory, when they are
checkouts) and how (dtype, threads, rounds, precision), beside every raw sample, so that two runs
can be compared later with statistics rather than eyeballed medians.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

FORMAT = "fastconv-bench"
FORMAT_VERSION = 2
# Environment variables that change how many threads run, or how they wait.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "FASTCONV_AUTO", "FASTCONV_NUMBA_CACHE")


def check_writable(path: str, flag: str) -> None:
    """``ValueError`` naming ``flag`` when ``path`` cannot be written: checked before measuring, so
    that a typo never costs the whole run."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ValueError(f"{flag}: {path} is a directory; give a file name")
    if not folder.is_dir():
        raise ValueError(f"{flag}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ValueError(f"{flag}: cannot write {path} (permission denied)")


def version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def _cpuinfo() -> dict[str, str]:
    """Each field of /proc/cpuinfo at its first appearance (the first processor's); empty where
    there is no such file."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def machine_kind() -> str:
    """The CPU's vendor, family (and for Intel, whose CPUs are all family 6, model) and widest
    vector instructions, e.g. ``"AuthenticAMD family 26 avx512"``: what sets how fastconv's kernels
    fare against torch's oneDNN, so the CI gate keeps budgets per kind. An Intel and an AMD machine,
    both AVX-512, put numba's 1x1 forward at 0.49x and 0.96x torch's time; two AMD ones, Zen 4
    (family 25, 512-bit operations in two halves) and Zen 5 (family 26, whole), at 0.96x and 0.50x;
    two Intel ones, the early stops' and a model 167 with AMX (2026-12-04), at 0.49x and 0.96x."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    width = "avx512" if "avx512f" in flags else "avx2" if "avx2" in flags else ""
    vendor = info.get("vendor_id") or platform.machine()
    family = f"family {info['cpu family']}" if info.get("cpu family") else ""
    model = f"model {info['model']}" if vendor == "GenuineIntel" and info.get("model") else ""
    return " ".join(filter(None, [vendor, family, model, width])) or "unknown"


def git_info(folder) -> dict | None:
    """``{"commit", "dirty", "branch"}`` of the git checkout holding ``folder``, else None."""
    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        top = git("rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty, "branch": branch, "root": top}


def threads_now() -> dict:
    """The thread settings in force: BLAS/OpenMP pools (threadpoolctl), numba's, torch's."""
    from threadpoolctl import threadpool_info

    from . import _timing

    pools = [{"library": os.path.basename(p["filepath"]), "api": p["user_api"], "internal_api": p["internal_api"],
              "version": p.get("version"), "threads": p["num_threads"]} for p in threadpool_info()]
    out = {"pools": pools, "env": {k: os.environ[k] for k in THREAD_VARIABLES if k in os.environ}}
    try:
        import numba

        out["numba"] = {"threads": numba.get_num_threads(), "layer": _numba_layer(numba)}
    except ImportError:
        pass
    torch = _timing.torch_module()
    if torch is not None:
        out["torch"] = {"threads": torch.get_num_threads()}
    return out


def _numba_layer(numba) -> str:
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return f"not started (configured: {numba.config.THREADING_LAYER})"


def environment() -> dict:
    """When, where and what: the parts of a run that do not depend on its results."""
    import fastconv

    from . import _timing

    package = Path(fastconv.__file__).resolve().parent
    source, cwd = git_info(package), git_info(Path.cwd())
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "cpu": cpu_name(), "cpus": os.cpu_count(),
                    "usable_cpus": _timing.default_threads(), "machine": platform.machine(),
                    "system": platform.system(), "release": platform.release(),
                    "python": platform.python_version(), "python_implementation": platform.python_implementation()},
        "threads": threads_now(),
        "versions": {name: version(name) for name in ("fastconv", "numpy", "numba", "torch", "scipy")},
        "git": {"fastconv": source, "cwd": cwd if cwd and (not source or cwd["root"] != source["root"]) else None},
    }


def read(path) -> dict:
    """A run written by ``fastconv bench --json``; ``ValueError`` naming the file otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path} is not a run saved by `fastconv bench --json` (no \"format\": \"{FORMAT}\")")
    if doc.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer fastconv (format {doc['format_version']})")
    return doc


def write(path, doc: dict) -> None:
    Path(path).write_text(json.dumps(doc, indent=1, allow_nan=True) + "\n")


def pytest_benchmark(doc: dict) -> dict:
    """``doc`` in pytest-benchmark's JSON format, for ``pytest-benchmark compare`` and its
    histograms: one benchmark per case, pass and implementation, grouped by case and pass as
    ``make bench-pytest`` groups them; the rounds are its rounds and the calls per sample its
    iterations. Needs pytest-benchmark (its own ``Stats`` computes the statistics)."""
    from pytest_benchmark import __version__ as pb_version
    from pytest_benchmark.stats import Stats

    env = doc["environment"]
    machine = env["machine"]
    git = env["git"]["cwd"] or env["git"]["fastconv"] or {}
    benchmarks = []
    for r in doc["results"]:
        if not r["times"]:
            continue
        stats = Stats()
        for t in r["times"]:
            stats.update(t)
        name = f"{r['impl']}[{r['case']}-{r['pass']}]"
        benchmarks.append({
            "group": f"{r['case']}-{r['pass']}", "name": name, "fullname": f"fastconv bench::{name}",
            "params": {"case": r["case"], "pass_": r["pass"], "impl": r["impl"]},
            "param": f"{r['case']}-{r['pass']}-{r['impl']}",
            "extra_info": {"macs": r["macs"], "error": r["error"], "ok": r["ok"], "algorithm": r.get("algorithm"),
                           "ratio_torch": r.get("ratio_torch", {}).get("median")},
            "options": {"disable_gc": True, "timer": "perf_counter", "min_rounds": len(r["times"]),
                        "max_time": None, "min_time": None, "precision": None, "confidence": None,
                        "warmup": True},
            "stats": {**{k: _finite(v) for k, v in stats.as_dict().items()}, "data": list(r["times"]),
                      "iterations": r["number"]},
        })
    return {
        "machine_info": {"node": machine["node"], "processor": machine["cpu"], "machine": machine["machine"],
                         "python_compiler": platform.python_compiler(),
                         "python_implementation": machine["python_implementation"],
                         "python_implementation_version": machine["python"], "python_version": machine["python"],
                         "python_build": list(platform.python_build()), "release": machine["release"],
                         "system": machine["system"],
                         "cpu": {"brand_raw": machine["cpu"], "count": machine["cpus"]},
                         "fastconv": {"settings": doc["settings"], "threads": env["threads"]}},
        "commit_info": {"id": git.get("commit", "unversioned"), "time": None, "author_time": None,
                        "dirty": git.get("dirty", False), "project": "fastconv",
                        "branch": git.get("branch", "(unknown)")},
        "benchmarks": benchmarks,
        "datetime": env["created"],
        "version": pb_version,
    }


def _finite(value):
    # pytest-benchmark's stddev of one round is NaN, which strict JSON readers refuse.
    return 0.0 if isinstance(value, float) and not math.isfinite(value) else value
