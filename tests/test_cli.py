"""The ``fastconv`` command through its entry points, on the tiny suites (seconds, not minutes)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import _precision, _results, backends, cases, cli
from fastconv import _timing as timing
from fastconv._args import impl_names

# Timed runs use the fast backends only: numba's first call compiles, which a unit test need not wait for.
FAST = "reference,torch"
needs_torch = pytest.mark.skipif(timing.torch_module() is None, reason="needs torch")


def run(capsys, *argv):
    """``fastconv *argv`` in-process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def quick_peak(monkeypatch):
    """The matmul peak on small sizes: the tests check the wiring, not the machine."""
    peak = timing.matmul_peak
    monkeypatch.setattr(timing, "matmul_peak", lambda dtype: peak(dtype, sizes=(64, 128), repeat=2))


@pytest.fixture
def no_measuring(monkeypatch):
    """Fail the test if anything is timed: flag errors must come before any measurement."""
    def refuse(*args, **kwargs):
        raise AssertionError("measured before checking the flags")
    monkeypatch.setattr(timing, "measure", refuse)
    monkeypatch.setattr(timing, "matmul_peak", refuse)


@pytest.fixture
def my_conv(tmp_path, monkeypatch):
    """A user's module ``myconv`` with conv2d's signature (the reference backend underneath), a
    wrong one, and a backward for the first."""
    (tmp_path / "myconv.py").write_text(textwrap.dedent('''
        import fastconv

        def conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return fastconv.conv2d(x, w, b, stride, padding, dilation, groups, backend="reference")

        def conv_backward(gy, x, w, stride=1, padding=0, dilation=1, groups=1, bias=True):
            return fastconv.conv2d_backward(gy, x, w, stride, padding, dilation, groups, bias=bias,
                                            backend="reference")

        def off_by_one_percent(x, w, b=None, **kw):
            return 1.01 * conv(x, w, b, **kw)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("myconv", None)
    yield "myconv"
    sys.modules.pop("myconv", None)


def test_python_m_fastconv_is_the_console_entry():
    proc = subprocess.run([sys.executable, "-m", "fastconv", "--help"], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for command in cli.SUBCOMMANDS:
        assert command in proc.stdout


def test_every_subcommand_dispatches_through_the_table():
    parser = cli.build_parser()
    for name, command in cli.SUBCOMMANDS.items():
        extra = {"compare": ["a.json", "b.json"]}.get(name, [])
        assert parser.parse_args([name, *extra]).run is command.run


def test_bench_help_lists_the_registry_suites_and_grammar(capsys):
    code, out, _ = run(capsys, "bench", "--help")
    assert code == 0
    assert all(name in out for name in (*backends.NAMES, "torch", *cases.SUITES))
    assert "size=16x56x56" in out and "--impl" in out and "--precision" in out


@needs_torch
def test_bench_prints_a_table_per_shape_and_writes_a_comparable_run(capsys, tmp_path, quick_peak):
    path = tmp_path / "out.json"
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", FAST, "--repeat", "2",
                       "--threads", "1", "--no-progress", "--json", str(path))
    assert code == 0, out
    assert "1 thread for" in out and "matmul peak" in out and "median of per-round ratios" in out
    for case in cases.TINY:
        assert case.name in out
    doc = json.loads(path.read_text())
    env = doc["environment"]
    assert doc["format"] == _results.FORMAT and env["created"].endswith("+00:00")
    assert env["machine"]["cpus"] >= 1 and env["versions"]["fastconv"] == fastconv.__version__
    assert env["versions"]["numpy"] == np.__version__ and "torch" in env["versions"]
    assert env["threads"]["pools"] and env["threads"]["torch"]["threads"] == 1  # measured inside the pinning
    assert "git" in env and doc["settings"]["threads"] == 1 and doc["settings"]["precision"] == "highest"
    assert doc["settings"]["settle_s"] == 0.0  # one thread: no idle pause between implementations
    assert doc["matmul_peak"]["gflops"] == max(max(v) for v in doc["matmul_peak"]["samples"].values())
    rows = doc["results"]
    assert len(rows) == len(cases.TINY) * 2 * 2  # shapes x passes x (reference, torch)
    assert all(r["ratio_torch"]["median"] == pytest.approx(1.0) for r in rows if r["impl"] == "torch")
    ref = [r for r in rows if r["impl"] == "reference"]
    assert all(len(r["times"]) == 2 and r["number"] >= 1 and r["ok"] and r["error"] < 1e-4 for r in ref)
    for r in ref:
        assert r["ratio_torch"]["min"] <= r["ratio_torch"]["median"] <= r["ratio_torch"]["max"]
    assert {(s["impl"], s["pass"]) for s in doc["summary"]} == {("reference", "forward"), ("reference", "backward")}


@needs_torch
def test_bench_summary_has_a_row_for_auto_and_its_distance_from_the_fastest(capsys, tmp_path, quick_peak):
    # auto timed as a user calls it (the choice included): its ratio to torch and to the fastest backend
    path = tmp_path / "out.json"
    timed = ",".join([b for b in backends.available() if b != "reference"] + ["auto", "torch"])
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", timed, "--repeat", "2", "--threads", "1",
                       "--no-progress", "--json", str(path))
    assert code == 0, out
    auto = {s["pass"]: s for s in json.loads(path.read_text())["summary"] if s["impl"] == "auto"}
    assert set(auto) == {"forward", "backward"}
    for entry in auto.values():
        assert 1.0 <= entry["fastest_geomean"] <= entry["fastest_worst"] and entry["shapes"] == len(cases.TINY)
    assert "auto (forward): " in out and "the fastest backend's time (geomean)" in out
    rows = [r for r in json.loads(path.read_text())["results"] if r["impl"] == "auto"]
    # the picks, in the table: "numba", or "winograd F(2x2,3x3)", or "im2col + numba" (two gradients)
    assert rows and all(" + ".join(p.split()[0] for p in r["algorithm"].split(" + ")) == r["auto"] for r in rows)


@needs_torch
def test_pytest_benchmark_reads_the_run(capsys, tmp_path, quick_peak):
    pytest.importorskip("pytest_benchmark")
    path = tmp_path / "pb.json"
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", FAST, "--repeat", "2", "--threads", "1",
                       "--pass", "forward", "--no-progress", "--pytest-benchmark", str(path))
    assert code == 0, out
    doc = json.loads(path.read_text())
    bench = {b["name"]: b for b in doc["benchmarks"]}
    assert "reference[tiny-k3-forward]" in bench and bench["reference[tiny-k3-forward]"]["stats"]["rounds"] == 2
    compare = [sys.executable, "-m", "pytest_benchmark", "compare", str(path), "--columns=median,rounds"]
    proc = subprocess.run(compare, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "reference[tiny-dw-k3s2-forward]" in proc.stdout and "tiny-k3-forward" in proc.stdout


def test_bench_one_shape_from_the_command_line(capsys, quick_peak):
    code, out, _ = run(capsys, "bench", "--shape", "1,2,6,6,3,3,1,0,1,2", "--backends", "reference",
                       "--pass", "forward", "--repeat", "1", "--no-progress")
    assert code == 0, out
    assert "n1-c2-6x6-k3-3x3-s1-p0-d2" in out and "backward" not in out


def test_bench_a_keyed_shape_with_per_axis_stride_padding_and_dilation(capsys, quick_peak):
    shape = "n=1 c=2 size=9x7 k=3 kernel=3x2 stride=2x1 pad=1:0x0:1 dil=1x2"
    code, out, _ = run(capsys, "bench", "--shape", shape, "--backends", "reference", "--repeat", "1",
                       "--no-progress")
    assert code == 0, out
    assert "n1-c2-9x7-k3-3x2-s2x1-p1:0x0:1-d1x2" in out and "WRONG" not in out


@pytest.mark.parametrize("suite", ["tiny1d", "tiny3d"])
@needs_torch
def test_bench_1d_and_3d_suites_against_torch(capsys, quick_peak, suite):
    if not hasattr(fastconv, cases.SUITES[suite][0].function):
        pytest.skip(f"this fastconv has no {cases.SUITES[suite][0].function}")
    code, out, _ = run(capsys, "bench", "--suite", suite, "--backends", FAST, "--repeat", "2", "--threads", "1",
                       "--no-progress")
    assert code == 0, out
    assert all(c.name in out for c in cases.SUITES[suite]) and "WRONG" not in out


def test_bench_without_torch_says_so(capsys, monkeypatch, quick_peak):
    monkeypatch.setattr(timing, "torch_module", lambda: None)
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", "reference", "--repeat", "1",
                       "--no-progress")
    assert code == 0
    assert "No baseline: torch is not installed" in out


def test_bench_plot(capsys, tmp_path, quick_peak):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bars.png"
    code, _, _ = run(capsys, "bench", "--suite", "tiny", "--backends", "reference", "--repeat", "1",
                     "--no-progress", "--plot", str(path))
    assert code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("flag", ["--json", "--plot", "--pytest-benchmark"])
def test_an_unwritable_output_fails_before_measuring(capsys, tmp_path, no_measuring, flag):
    code, _, err = run(capsys, "bench", "--suite", "tiny", flag, str(tmp_path / "missing" / "x.json"))
    assert code == 2 and f"{flag}: the folder" in err and "does not exist" in err
    code, _, err = run(capsys, "bench", "--suite", "tiny", flag, str(tmp_path))
    assert code == 2 and "is a directory" in err
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: permissions do not stop writes")
    code, _, err = run(capsys, "bench", "--suite", "tiny", flag, str(locked / "x.json"))
    assert code == 2 and "permission denied" in err


def test_more_threads_than_cpus_warns(capsys, monkeypatch, quick_peak):
    monkeypatch.setattr(timing, "default_threads", lambda: 2)
    code, _, err = run(capsys, "bench", "--suite", "tiny", "--backends", "reference", "--repeat", "1",
                       "--pass", "forward", "--threads", "64", "--no-progress")
    assert code == 0
    assert "--threads 64 is more than the 2 CPUs" in err


@needs_torch
def test_precision_flag_sets_the_level_for_the_run_only(capsys, tmp_path, quick_peak):
    path = tmp_path / "run.json"
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", FAST, "--repeat", "1", "--no-progress",
                       "--pass", "forward", "--precision", "high", "--json", str(path))
    assert code == 0, out
    assert "precision high" in out and json.loads(path.read_text())["settings"]["precision"] == "high"
    assert _precision.get_precision() == "highest"


def test_algorithm_column_when_a_backend_names_its_algorithm(capsys, monkeypatch, quick_peak):
    ref = backends.get("reference")
    seen = []

    def algorithm(geom, dtype, precision):
        seen.append(precision)
        return f"direct {geom.kernel[0]}x{geom.kernel[1]}"
    monkeypatch.setattr(ref, "algorithm", algorithm, raising=False)
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", "reference", "--repeat", "1",
                       "--pass", "forward", "--precision", "high", "--no-progress")
    assert code == 0, out
    assert "algorithm" in out and "direct 3x3" in out and set(seen) == {"high"}


@needs_torch
def test_your_own_function_beside_the_backends(capsys, tmp_path, quick_peak, my_conv):
    path = tmp_path / "run.json"
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", FAST, "--repeat", "2", "--no-progress",
                       "--impl", "myconv:conv", "--json", str(path))
    assert code == 0, out
    assert "myconv:conv" in out
    mine = [r for r in json.loads(path.read_text())["results"] if r["impl"] == "myconv:conv"]
    assert {r["pass"] for r in mine} == {"forward", "backward"}  # conv_backward found beside conv
    assert all(r["ok"] and r["error"] < 1e-4 and len(r["times"]) == 2 for r in mine)


@needs_torch
def test_a_wrong_function_is_reported_and_fails(capsys, quick_peak, my_conv):
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", "torch", "--repeat", "1", "--no-progress",
                       "--impl", "myconv:off_by_one_percent")
    assert code == 1
    assert "WRONG RESULT: myconv:off_by_one_percent forward on tiny-k3" in out
    assert "has no backward" in out  # no off_by_one_percent_backward: the pass is reported, not run


@needs_torch
def test_impl_backward_flag(capsys, tmp_path, quick_peak, my_conv):
    path = tmp_path / "run.json"
    code, out, _ = run(capsys, "bench", "--suite", "tiny", "--backends", "torch", "--repeat", "1", "--no-progress",
                       "--impl", "myconv:off_by_one_percent", "--impl-backward", "myconv:conv_backward",
                       "--pass", "backward", "--json", str(path))
    assert code == 0, out
    assert all(r["ok"] for r in json.loads(path.read_text())["results"])


@pytest.mark.parametrize("argv, message", [
    (["--impl", "no_such_module_xyz:conv"], "--impl: cannot import 'no_such_module_xyz'"),
    (["--impl", "myconv:nothing"], "--impl: 'myconv' has no callable 'nothing'"),
    (["--impl", "myconv"], "has no conv1d, conv2d or conv3d"),
    (["--impl", "myconv:conv", "--impl-backward", "myconv"], "--impl-backward: expected 'package.module:function'"),
])
def test_bad_impl_is_a_usage_error_before_measuring(capsys, no_measuring, my_conv, argv, message):
    code, _, err = run(capsys, "bench", "--suite", "tiny", *argv)
    assert code == 2 and message in err


def test_check_passes_on_the_tiny_suite(capsys):
    code, out, _ = run(capsys, "check", "--suite", "tiny", "--backends", "reference")
    assert code == 0, out
    assert "all passed" in out and "reference" in out


@needs_torch
def test_check_fails_on_a_wrong_backend(capsys, monkeypatch):
    ref = backends.get("reference")
    forward = ref.forward
    # 1% off: far beyond float32 rounding
    monkeypatch.setattr(ref, "forward", lambda x, w, geom, bias=None: 1.01 * forward(x, w, geom, bias))
    code, out, _ = run(capsys, "check", "--suite", "tiny", "--backends", "reference")
    assert code == 1
    assert "FAIL" in out and "4 failed" not in out and "2 failed" in out  # forward only, both shapes


def test_info_lists_versions_backends_and_auto(capsys):
    code, out, _ = run(capsys, "info", "--suite", "tiny", "--time-auto", "tiny")
    assert code == 0
    for word in ("numpy", "numba", "torch", "cpu", "backends", *(c.name for c in cases.TINY)):
        assert word in out  # whole: a long cell widens a piped table rather than cutting its labels


def test_info_shows_the_picks_of_a_warm_process(capsys, monkeypatch):
    # Kernels that load from the disk cache are waited for (a second or so) before auto's table; a
    # backend still compiling after READY_WAIT_S is named under it.
    if "winograd" not in backends.available():
        pytest.skip("needs the winograd backend")
    asked = {"n": 0}

    def loads_after_a_while(name, dtype):
        asked["n"] += 1
        return name != "winograd" or asked["n"] > 20
    monkeypatch.setattr(backends, "_ready", loads_after_a_while)
    code, out, _ = run(capsys, "info", "--time-auto", "none")
    assert code == 0 and "still compiles" not in out
    assert any("r14-c256-k3" in line and "winograd" in line for line in out.splitlines()), out
    monkeypatch.setattr(backends, "_ready", lambda name, dtype: name != "winograd")
    monkeypatch.setattr(backends.wait_ready, "__defaults__", (0.1,))
    code, out, _ = run(capsys, "info", "--time-auto", "none")
    assert code == 0 and "(picked while winograd still compiles" in out


@pytest.mark.parametrize("argv, message", [
    (["bench", "--backends", "nmba"], f"unknown backend 'nmba'; choose from {', '.join(impl_names())}"),
    (["bench", "--shape", "8,x,56,56,64,3,1,1"], "field C (input channels) must be a positive int; got 'x'"),
    (["bench", "--shape", "8,64,56,56,64,3,1"], "has 7 fields; expected 8 to 10"),
    (["bench", "--shape", "8,6,5,5,64,3,1,1,4"], "`groups`=4 must divide the input's 6 channels"),
    (["bench", "--shape", "n=1 c=2 size=8x8 k=2 kernel=3x3x3"], "field kernel has 3 axes but size has 2"),
    (["bench", "--shape", "n=1 c=2 size=8 k=2"], "missing kernel"),
    (["bench", "--shape", "n=1 c=2 size=8 k=2 kernel=3 pad=-1"], "field pad must be an int >= 0"),
    (["bench", "--shape", "n=1 c=2 size=8 k=2 kernel=3 colour=red"], "unknown field 'colour=red'"),
    (["bench", "--threads", "0"], "expected a positive int; got '0'"),
    (["bench", "--suite", "huge"], "invalid choice: 'huge'"),
    (["bench", "--pass", "sideways"], "invalid choice: 'sideways'"),
    (["bench", "--precision", "low"], "invalid choice: 'low'"),
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


@pytest.mark.parametrize("text", ["n=16 c=128 size=4096 k=128 kernel=3 dil=8 pad=8",
                                  "n=2,c=64,size=16x56x56,k=64,kernel=1x3x3,pad=0x1x1",
                                  "n=1 c=4 size=9x9 k=4 kernel=3 stride=2 pad=same groups=4"])
def test_keyed_shapes_agree_with_the_geometry(text):
    case = cases.parse_shape(text)
    assert case.geometry.x_shape == case.x_shape and case.geometry.w_shape == case.w_shape
    assert cases.parse_shape(text, name="mine").name == "mine"


def test_same_padding_in_the_grammar_is_the_geometrys():
    case = cases.parse_shape("n=1 c=1 size=10 k=1 kernel=4 stride=3 pad=same")
    assert case.geometry.out_size == (4,)  # ceil(10 / 3)


def test_each_round_starts_with_the_next_implementation(monkeypatch):
    # An implementation that leaves threads spinning slows whichever runs next: rotating the
    # order spreads that over all of them instead of always the same one.
    log = []
    monkeypatch.setattr(timing, "MIN_SAMPLE_S", 0)  # one call per sample
    monkeypatch.setattr(timing, "LEAD_IN_S", 0)  # after one untimed call
    monkeypatch.setattr(timing, "warm_up", lambda impl, dtype: None)
    monkeypatch.setattr(timing, "skip_reason", lambda *args, **kwargs: None)
    monkeypatch.setattr(timing, "algorithm", lambda *args, **kwargs: None)
    monkeypatch.setattr(timing.Problem, "runner", lambda self, impl, pass_: lambda: log.append(impl))
    impls = ["reference", "im2col", "numba"]
    timing.measure(cases.TINY[:1], impls, ("forward",), repeat=4, check=False)
    rounds = log[2 * len(impls)::2]  # after two warm-up calls each; the timed calls
    assert [rounds[i:i + 3] for i in range(0, 12, 3)] == [
        impls, impls[1:] + impls[:1], impls[2:] + impls[:2], impls]


def test_a_sample_after_another_implementation_follows_an_idle_pause(monkeypatch):
    # NumPy's OpenBLAS leaves its workers spinning for about 0.1 s after a call: a pause lets
    # them sleep before the next implementation's lead-in; none on one thread (no workers).
    log = []
    monkeypatch.setattr(timing, "SETTLE_S", 0.5)
    monkeypatch.setattr(timing, "MIN_SAMPLE_S", 0)
    monkeypatch.setattr(timing, "LEAD_IN_S", 0)
    monkeypatch.setattr(timing.time, "sleep", lambda s: log.append(("sleep", s)))
    monkeypatch.setattr(timing, "warm_up", lambda impl, dtype: None)
    monkeypatch.setattr(timing, "skip_reason", lambda *args, **kwargs: None)
    monkeypatch.setattr(timing, "algorithm", lambda *args, **kwargs: None)
    monkeypatch.setattr(timing.Problem, "runner", lambda self, impl, pass_: lambda: log.append(impl))
    with timing.pinned_threads(2):
        timing.measure(cases.TINY[:1], ["im2col", "numba"], ("forward",), repeat=2, check=False)
    timed = log[4:]  # after the warm-up calls
    # rounds im2col, numba | numba, im2col: a pause wherever the implementation changes
    assert timed == ["im2col", "im2col", ("sleep", 0.5), "numba", "numba",
                     "numba", "numba", ("sleep", 0.5), "im2col", "im2col"]
    log.clear()
    with timing.pinned_threads(1):
        timing.measure(cases.TINY[:1], ["im2col", "numba"], ("forward",), repeat=2, check=False)
    assert ("sleep", 0.5) not in log


def test_every_sample_follows_untimed_calls_of_its_own(monkeypatch):
    # torch's threads spin for a while after its call and take a core from whatever runs next:
    # each sample follows LEAD_IN_S of untimed calls of the same implementation.
    log = []
    clock = iter(range(10**6))
    monkeypatch.setattr(timing, "MIN_SAMPLE_S", 0)
    monkeypatch.setattr(timing, "LEAD_IN_S", 2)  # ticks of the fake clock: two calls
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(timing, "warm_up", lambda impl, dtype: None)
    monkeypatch.setattr(timing, "skip_reason", lambda *args, **kwargs: None)
    monkeypatch.setattr(timing, "algorithm", lambda *args, **kwargs: None)
    monkeypatch.setattr(timing.Problem, "runner", lambda self, impl, pass_: lambda: log.append(impl))
    impls = ["im2col", "numba"]
    timing.measure(cases.TINY[:1], impls, ("forward",), repeat=3, check=False)
    rounds = log[2 * len(impls):]  # after two warm-up calls each
    assert rounds == [impl for k in range(3) for impl in impls[k % 2:] + impls[:k % 2] for _ in range(3)]


def test_ratios_are_medians_of_per_round_ratios():
    # Round 2 is a burst of load on both: the per-round ratio stays 2, the ratio of medians does not.
    def timing_(impl, times):
        return timing.Timing("c", "forward", impl, 1, times=times)
    results = [timing_("torch", [1.0, 10.0, 1.0, 1.1]), timing_("numba", [2.0, 20.0, 2.0, 2.2])]
    assert timing.ratio_to(results, "paired")["c", "forward", "numba"] == pytest.approx(2.0)
    assert list(timing.per_round(results)["c", "forward", "numba"]) == pytest.approx([2, 2, 2, 2])
    assert timing.ratio_to(results, "best")["c", "forward", "numba"] == pytest.approx(2.0)
    fastest = timing.per_round(results, None)
    assert list(fastest["c", "forward", "torch"]) == [1, 1, 1, 1]


def test_matmul_peak_is_the_best_sample_and_keeps_them_all():
    peak = timing.matmul_peak(np.float32, sizes=(32, 64), repeat=3)
    assert set(peak.samples) == {32, 64} and all(len(v) == 3 for v in peak.samples.values())
    assert peak.gflops == max(max(v) for v in peak.samples.values()) and peak.gflops > 0
    assert "best of 3 rounds over 32/64" in peak.describe(np.float32)
