"""The ``fastconv`` command through its entry points, on the tiny suite (seconds, not minutes)."""

import json
import subprocess
import sys

import pytest

from fastconv import _timing as timing
from fastconv import backends, cases, cli

# Timed runs use the fast backends only: numba's first call compiles, which a unit test need not wait for.
FAST = "reference,torch"


def run(capsys, *argv):
    """``fastconv *argv`` in-process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_python_m_fastconv_is_the_console_entry():
    proc = subprocess.run([sys.executable, "-m", "fastconv", "--help"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for command in ("bench", "check", "info", "gate"):
        assert command in proc.stdout


def test_bench_help_lists_the_registry_and_suites(capsys):
    code, out, _ = run(capsys, "bench", "--help")
    assert code == 0
    assert all(name in out for name in (*backends.NAMES, "torch", *cases.SUITES))


@pytest.mark.skipif(timing.torch_module() is None, reason="needs torch")
def test_bench_prints_a_table_per_shape_and_writes_json(capsys, tmp_path):
    path = tmp_path / "out.json"
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", FAST, "--repeat", "2",
                       "--threads", "1", "--no-progress", "--json", str(path))
    assert code == 0, out
    assert "1 thread for" in out and "matmul peak" in out
    for case in cases.TINY:
        assert case.name in out
    doc = json.loads(path.read_text())
    assert doc["threads"] == 1 and doc["matmul_peak_gflops"] > 0
    rows = doc["results"]
    assert len(rows) == len(cases.TINY) * 2 * 2  # shapes x passes x (reference, torch)
    torch_rows = [r for r in rows if r["impl"] == "torch"]
    assert all(r["ratio_torch"] == pytest.approx(1.0) for r in torch_rows)
    ref = [r for r in rows if r["impl"] == "reference"]
    assert all(len(r["times"]) == 2 and r["median_s"] > 0 and r["ok"] and r["error"] < 1e-4 for r in ref)


def test_bench_one_shape_from_the_command_line(capsys):
    code, out, _ = run(capsys, "bench", "--shape", "1,2,6,6,3,3,1,0,1,2", "--backends", "reference",
                       "--pass", "forward", "--repeat", "1", "--no-progress")
    assert code == 0, out
    assert "n1-c2-6x6-k3x3-s1-p0-d2" in out and "backward" not in out


def test_bench_without_torch_says_so(capsys, monkeypatch):
    monkeypatch.setattr(timing, "torch_module", lambda: None)
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", "reference", "--repeat", "1",
                       "--no-progress")
    assert code == 0
    assert "No baseline: torch is not installed" in out


def test_bench_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bars.png"
    code, _, _ = run(capsys, "bench", "--suite", "tiny", "--backends", "reference", "--repeat", "1",
                     "--no-progress", "--plot", str(path))
    assert code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_passes_on_the_tiny_suite(capsys):
    code, out, _ = run(capsys, "check", "--suite", "tiny")
    assert code == 0, out
    assert "all passed" in out
    for name in backends.available():
        assert name in out


@pytest.mark.skipif(timing.torch_module() is None, reason="without torch the reference backend is the oracle")
def test_check_fails_on_a_wrong_backend(capsys, monkeypatch):
    ref = backends.get("reference")
    forward = ref.forward
    # 1% off: far beyond float32 rounding
    monkeypatch.setattr(ref, "forward", lambda x, w, geom, bias=None: 1.01 * forward(x, w, geom, bias))
    code, out, _ = run(capsys, "check", "--suite", "tiny", "--backends", "reference")
    assert code == 1
    assert "FAIL" in out and "4 failed" not in out and "2 failed" in out  # forward only, both shapes


def test_info_lists_versions_backends_and_auto(capsys):
    code, out, _ = run(capsys, "info", "--suite", "tiny")
    assert code == 0
    for word in ("numpy", "numba", "torch", "cpu", "backends", *(c.name for c in cases.TINY)):
        assert word in out


@pytest.mark.parametrize("argv, message", [
    (["bench", "--backends", "nmba"], f"unknown backend 'nmba'; choose from {', '.join(cli.IMPLS)}"),
    (["bench", "--shape", "8,x,56,56,64,3,1,1"], "field C (input channels) must be a positive int; got 'x'"),
    (["bench", "--shape", "8,64,56,56,64,3,1"], "has 7 fields; expected 8 to 10"),
    (["bench", "--shape", "8,6,5,5,64,3,1,1,4"], "`groups`=4 must divide the input's 6 channels"),
    (["bench", "--threads", "0"], "expected a positive int; got '0'"),
    (["bench", "--suite", "huge"], "invalid choice: 'huge'"),
    (["bench", "--pass", "sideways"], "invalid choice: 'sideways'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_flags_exit_2_with_a_message(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_unavailable_backend_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setattr(backends, "available", lambda: ["reference"])

    def get(name):
        raise ImportError(f"backend {name!r} gone")
    monkeypatch.setattr(backends, "get", get)
    code, _, err = run(capsys, "bench", "--backends", "numba")
    assert code == 2
    assert "backend 'numba' gone; available here: reference" in err


def test_each_round_starts_with_the_next_implementation(monkeypatch):
    # An implementation that leaves threads spinning slows whichever runs next: rotating the
    # order spreads that over all of them instead of always the same one.
    log = []
    monkeypatch.setattr(timing, "MIN_SAMPLE_S", 0)  # one call per sample
    monkeypatch.setattr(timing, "warm_up", lambda impl, dtype: None)
    monkeypatch.setattr(timing.Problem, "runner", lambda self, impl, pass_: lambda: log.append(impl))
    impls = ["reference", "im2col", "numba"]
    timing.measure(cases.TINY[:1], impls, ("forward",), repeat=4, check=False)
    rounds = log[2 * len(impls):]  # after two warm-up calls each
    assert [rounds[i:i + 3] for i in range(0, 12, 3)] == [
        impls, impls[1:] + impls[:1], impls[2:] + impls[:2], impls]
