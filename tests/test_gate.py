"""The CI gate's comparison logic, on synthetic timings: no clock is read here."""

import numpy as np
import pytest

from fastconv import _gate as gate
from fastconv import cli

BUDGETS = gate.Budgets({("forward", "im2col", "q-r28"): 1.2, ("backward", "numba", "q-dw"): 0.8},
                       tolerance=1.5, suite="tiny", threads=1, repeat=2,
                       notes="# how the tolerance was chosen\n")
K3, DW = ("forward", "im2col", "tiny-k3"), ("forward", "im2col", "tiny-dw-k3s2")


def test_within_budget_passes():
    measured = {("forward", "im2col", "q-r28"): 1.2 * 1.45, ("backward", "numba", "q-dw"): 0.8}
    verdicts = gate.compare(measured, BUDGETS)
    assert [v.status for v in verdicts] == ["ok", "ok"]
    assert not any(v.failed for v in verdicts)


def test_beyond_budget_fails_and_names_shape_and_backend():
    measured = {("forward", "im2col", "q-r28"): 1.2 * 1.55, ("backward", "numba", "q-dw"): 0.8}
    slow, fine = gate.compare(measured, BUDGETS)
    assert slow.failed and slow.status == "SLOWER" and not fine.failed
    message = slow.message(BUDGETS.tolerance)
    assert "im2col forward on q-r28" in message and "1.86x" in message and "1.80x" in message


def test_much_faster_passes_with_a_note():
    measured = {("forward", "im2col", "q-r28"): 0.5, ("backward", "numba", "q-dw"): 0.8}
    faster = gate.compare(measured, BUDGETS)[0]
    assert faster.status == "faster" and not faster.failed
    assert "bench-budgets" in faster.message(BUDGETS.tolerance)


def test_missing_measurement_unbudgeted_entry_and_wrong_result_fail():
    measured = {("forward", "im2col", "q-r28"): 1.0, ("forward", "newbackend", "q-r28"): 1.0}
    wrong = {("forward", "im2col", "q-r28")}
    by_key = {v.key: v for v in gate.compare(measured, BUDGETS, wrong)}
    assert by_key["forward", "im2col", "q-r28"].status == "WRONG"
    assert by_key["backward", "numba", "q-dw"].status == "MISSING"
    assert by_key["forward", "newbackend", "q-r28"].status == "NO BUDGET"
    assert all(v.failed for v in by_key.values())


def test_budget_file_round_trips(tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text(gate.format_budgets(BUDGETS))
    back = gate.read_budgets(path)
    assert back.ratios == BUDGETS.ratios
    assert (back.tolerance, back.suite, back.threads, back.repeat) == (1.5, "tiny", 1, 2)
    assert back.notes == BUDGETS.notes  # the explanation survives `--update`


def _fake_runs(monkeypatch, *runs):
    """Make the gate's measurements return ``runs`` in turn (each: ratios for the whole suite)."""
    queue = list(runs)
    calls = []

    def fake(budgets, cases_, label, repeat_runs=1):
        calls.append([c.name for c in cases_])
        return [queue.pop(0) for _ in range(repeat_runs)], set()
    monkeypatch.setattr(gate, "_run", fake)
    monkeypatch.setattr(gate.timing, "torch_module", lambda: object())
    return calls


def _budget_file(tmp_path):
    budgets = gate.Budgets({K3: 1.0, DW: 2.0}, tolerance=1.5, suite="tiny")
    path = tmp_path / "budgets.toml"
    path.write_text(gate.format_budgets(budgets))
    return path


def _gate(capsys, *argv):
    try:
        code = cli.main(["gate", *argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out + err


def test_gate_command_passes_within_budget(capsys, monkeypatch, tmp_path):
    path = _budget_file(tmp_path)
    calls = _fake_runs(monkeypatch, {K3: 1.4, DW: 2.1})
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 0 and "gate passed" in out
    assert len(calls) == 1  # nothing to confirm


def test_gate_command_fails_on_a_regression_that_repeats(capsys, monkeypatch, tmp_path):
    path = _budget_file(tmp_path)
    slow = {K3: 1.0, DW: 3.5}
    calls = _fake_runs(monkeypatch, slow, {DW: 3.3})
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 1
    assert calls[1] == ["tiny-dw-k3s2"]  # only the failing shape is measured again
    assert "FAIL im2col forward on tiny-dw-k3s2: 3.30x torch's time" in out and "gate FAILED" in out


def test_gate_command_forgives_a_burst_of_noise(capsys, monkeypatch, tmp_path):
    path = _budget_file(tmp_path)
    burst = {K3: 1.0, DW: 3.5}
    _fake_runs(monkeypatch, burst, {DW: 2.2})
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 0, out


def test_update_writes_the_median_of_runs_and_keeps_the_tolerance(capsys, monkeypatch, tmp_path):
    path = _budget_file(tmp_path)
    key = K3
    _fake_runs(monkeypatch, {key: 1.0}, {key: 3.0}, {key: 1.2})
    code, _ = _gate(capsys, "--budgets", str(path), "--update", "--runs", "3")
    assert code == 0
    budgets = gate.read_budgets(path)
    assert budgets.ratios == {key: pytest.approx(np.median([1.0, 3.0, 1.2]), abs=1e-3)}
    assert budgets.tolerance == 1.5 and budgets.suite == "tiny"


def test_gate_without_budget_file_says_how_to_make_one(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(gate.timing, "torch_module", lambda: object())
    code, out = _gate(capsys, "--budgets", str(tmp_path / "none.toml"))
    assert code == 2 and "make bench-budgets" in out


@pytest.mark.skipif(gate.timing.torch_module() is None, reason="the gate needs torch")
def test_gate_end_to_end_on_the_tiny_suite(capsys, tmp_path):
    """Real timings, with budgets 100x away from them either way, so that noise cannot decide."""
    path = tmp_path / "budgets.toml"
    path.write_text(gate.format_budgets(gate.Budgets(tolerance=1.5, suite="tiny", threads=1, repeat=2)))
    code, _ = _gate(capsys, "--budgets", str(path), "--update", "--runs", "1")
    assert code == 0
    measured = gate.read_budgets(path)
    assert {impl for _, impl, _ in measured.ratios} == set(gate.backends.available())

    generous = gate.Budgets({k: 100 * r for k, r in measured.ratios.items()}, 1.5, "tiny", 1, "float32", 2)
    path.write_text(gate.format_budgets(generous))
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 0 and "gate passed" in out

    stingy = gate.Budgets({k: r / 100 for k, r in measured.ratios.items()}, 1.5, "tiny", 1, "float32", 2)
    path.write_text(gate.format_budgets(stingy))
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 1 and "gate FAILED" in out
    assert "FAIL reference forward on tiny-k3" in out
