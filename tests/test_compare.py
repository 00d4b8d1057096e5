"""``fastconv compare``: ratios of two saved runs with bootstrap intervals, verdicts and --fail-above.

One real tiny run is saved once; the others are copies with their samples set from its medians and
scaled, so that the verdicts are decided by construction, not by the machine's noise."""

import copy
import json

import numpy as np
import pytest

from fastconv import _compare, cli
from fastconv import _timing as timing


def run(capsys, *argv):
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real ``fastconv bench --json`` run of the reference backend (and torch) on the tiny suite."""
    path = tmp_path_factory.mktemp("runs") / "a.json"
    impls = "reference,torch" if timing.torch_module() else "reference"
    code = cli.main(["bench", "--suite", "tiny", "--backends", impls, "--repeat", "5", "--threads", "1",
                     "--no-progress", "--json", str(path)])
    assert code == 0
    return json.loads(path.read_text())


def _variant(tmp_path, doc, name, factor=1.0, spread=0.0, only=None):
    """``doc`` with every entry's samples replaced by their median with a deterministic +-``spread``
    wobble (times ``factor`` for ``only``, or all), written to ``name``: the real samples' noise (a
    burst of load on a shared machine) would widen the intervals the verdicts are tested on."""
    new = copy.deepcopy(doc)
    for i, r in enumerate(r for r in new["results"] if r["times"]):
        # shifted per entry: the same wobble on torch and a backend would cancel in their ratio
        wobble = 1 + spread * np.roll(np.linspace(-1, 1, len(r["times"])), i)
        scale = factor if only is None or (r["case"], r["pass"]) == only else 1.0
        r["times"] = list(np.median(r["times"]) * scale * wobble)
    path = tmp_path / name
    path.write_text(json.dumps(new))
    return str(path)


def test_the_same_run_is_within_noise(capsys, tmp_path, saved):
    a = _variant(tmp_path, saved, "a.json")
    b = _variant(tmp_path, saved, "b.json", spread=0.05)
    code, out = run(capsys, "compare", a, b, "--fail-above", "1.10", "--impl", "reference")
    assert code == 0, out
    assert "0 faster, 0 slower, 4 within noise of 4 entries" in out and "compare passed" in out


def test_a_slowdown_is_slower_and_fails_above_the_threshold(capsys, tmp_path, saved):
    a = _variant(tmp_path, saved, "a.json", spread=0.02)
    b = _variant(tmp_path, saved, "b.json", factor=1.5, spread=0.02, only=("tiny-k3", "forward"))
    code, out = run(capsys, "compare", a, b, "--fail-above", "1.10", "--impl", "reference")
    assert code == 1
    assert "FAIL reference forward on tiny-k3: 1.500x A's time" in out and "compare FAILED: 1 entries" in out
    code, out = run(capsys, "compare", a, b, "--fail-above", "1.60", "--impl", "reference")  # within the allowance
    assert code == 0 and "1 slower" in out
    code, out = run(capsys, "compare", a, b)  # no threshold: a report, never a failure
    assert code == 0 and "slower" in out


def test_a_speedup_is_faster(capsys, tmp_path, saved):
    a = _variant(tmp_path, saved, "a.json", spread=0.02)
    b = _variant(tmp_path, saved, "b.json", factor=0.5, spread=0.02)
    code, out = run(capsys, "compare", a, b, "--fail-above", "1.1", "--impl", "reference")
    assert code == 0 and "4 faster" in out


@pytest.mark.skipif(timing.torch_module() is None, reason="needs torch in the run")
def test_relative_to_torch_cancels_a_slower_machine(capsys, tmp_path, saved):
    # Everything, torch included, 1.5x slower: the machine changed, not the code.
    a = _variant(tmp_path, saved, "a.json", spread=0.02)
    b = _variant(tmp_path, saved, "b.json", factor=1.5, spread=0.02)
    code, out = run(capsys, "compare", a, b, "--fail-above", "1.1")
    assert code == 1 and "compare FAILED" in out
    code, out = run(capsys, "compare", a, b, "--fail-above", "1.1", "--relative-to", "torch")
    assert code == 0, out
    assert "time / torch's (same round)" in out and "4 within noise of 4 entries" in out


def test_impl_filter_and_environment_differences(capsys, tmp_path, saved):
    other = copy.deepcopy(saved)
    other["settings"]["threads"] = 2
    other["environment"]["versions"]["numpy"] = "0.0"
    b = tmp_path / "b.json"
    b.write_text(json.dumps(other))
    a = _variant(tmp_path, saved, "a.json")
    code, out = run(capsys, "compare", a, str(b), "--impl", "reference")
    assert code == 0
    assert "differs: threads: 1 -> 2" in out and "differs: numpy:" in out
    code, out = run(capsys, "compare", a, str(b), "--impl", "nothing")
    assert code == 2 and "no shape, pass and implementation in common among --impl nothing" in out


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ('{"benchmarks": []}', "is not a run saved by `fastconv bench --json`"),
])
def test_a_file_that_is_not_a_run_is_exit_2(capsys, tmp_path, saved, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out = run(capsys, "compare", str(bad), _variant(tmp_path, saved, "a.json"))
    assert code == 2 and message in out
    code, out = run(capsys, "compare", str(tmp_path / "missing.json"), str(bad))
    assert code == 2 and "cannot read" in out


@pytest.mark.parametrize("argv, message", [
    (["--fail-above", "nan"], "expected a finite number above 0 such as 1.10"),
    (["--fail-above", "-1"], "expected a finite number above 0 such as 1.10"),
    (["--confidence", "95"], "expected a level between 0 and 1"),
])
def test_bad_flags(capsys, argv, message):
    code, out = run(capsys, "compare", "a.json", "b.json", *argv)
    assert code == 2 and message in out


def test_interval_brackets_the_ratio_and_narrows_with_agreement():
    rng = np.random.default_rng(1)
    a = 1 + 0.01 * rng.standard_normal(9)
    ratio, low, high = _compare.ratio_interval(a, 2 * a)
    assert ratio == pytest.approx(2.0) and low <= ratio <= high and high - low < 0.05
    assert _compare.verdict(low, high) == "slower"
    noisy = 1 + 0.3 * rng.standard_normal(9)
    _, low, high = _compare.ratio_interval(a, noisy)
    assert low < 1 < high and _compare.verdict(low, high) == "within noise"
    assert _compare.verdict(*_compare.ratio_interval([1.0], [2.0])[1:]) == "too few rounds"

