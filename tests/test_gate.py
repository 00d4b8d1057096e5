"""The CI gate: its comparison logic on synthetic timings, the budgets file's schema (exit 2 naming
the key), --init, and one end-to-end run on the tiny suite with a file's own shapes and function."""

import sys
import textwrap

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
    assert "gate --update" in faster.message(BUDGETS.tolerance)


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
    budgets = gate.Budgets({K3: 1.2, ("backward", "numba", DW[2]): 0.8}, tolerance=1.5, suite="tiny", threads=1,
                           repeat=2, notes=BUDGETS.notes)
    path.write_text(gate.format_budgets(budgets))
    back = gate.read_budgets(path)
    assert back.ratios == budgets.ratios
    assert (back.tolerance, back.suite, back.threads, back.repeat) == (1.5, "tiny", 1, 2)
    assert back.notes == BUDGETS.notes  # the explanation survives `--update`


def _fake_runs(monkeypatch, *runs):
    """Make the gate's measurements return ``runs`` in turn (each: ratios for the whole suite)."""
    queue = list(runs)
    calls = []

    def fake(budgets, cases_, impls, repeat_runs=1):
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
    assert code == 2 and "fastconv gate --init" in out


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


# -- the budgets file's schema: a bad file is exit 2 naming the key, before anything is measured --

GOOD = '''
tolerance = 1.5
suite = "tiny"
threads = 1
repeat = 2
stat = "best"

[forward.im2col]
"tiny-k3" = 1.2
'''


@pytest.fixture
def no_measuring(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("measured a file that should have been refused")
    monkeypatch.setattr(gate, "_run", refuse)
    monkeypatch.setattr(gate.timing, "torch_module", lambda: object())


@pytest.mark.parametrize("edit, message", [
    (("tolerance = 1.5", "tolerance = nan"), "tolerance: nan is not a finite number"),
    (("tolerance = 1.5", "tolerance = inf"), "tolerance: inf is not a finite number"),
    (("tolerance = 1.5", "tolerance = 0"), "tolerance: 0 is less than the minimum of 1"),
    (("tolerance = 1.5", "tolerance = -2.0"), "tolerance: -2.0 is less than the minimum of 1"),
    (('"tiny-k3" = 1.2', '"tiny-k3" = nan'), 'forward.im2col."tiny-k3": nan is not a finite number'),
    (('"tiny-k3" = 1.2', '"tiny-k3" = -1.2'), 'forward.im2col."tiny-k3": -1.2 is less than or equal to the minimum'),
    (('"tiny-k3" = 1.2', '"tiny-k3" = 0'), 'forward.im2col."tiny-k3": 0 is less than or equal to the minimum of 0'),
    (('"tiny-k3" = 1.2', '"tiny-k3" = "1.2"'), "forward.im2col.\"tiny-k3\": '1.2' is not of type 'number'"),
    (('suite = "tiny"', 'suite = "mine"'), "suite: 'mine' is not one of"),
    (("repeat = 2", "repeat = 0"), "repeat: 0 is less than the minimum of 1"),
    (("repeat = 2", "repeat = 2.5"), "repeat: 2.5 is not of type 'integer'"),
    (("threads = 1", "threads = true"), "threads: True is not of type 'integer'"),
    (('stat = "best"', 'stat = "mean"'), "stat: 'mean' is not one of ['best', 'median', 'paired']"),
    (('stat = "best"', 'stats = "best"'), "Additional properties are not allowed ('stats' was unexpected)"),
    (("[forward.im2col]", "[sideways.im2col]"), "'sideways' was unexpected"),
    (("[forward.im2col]", "[forward.numbba]"), "forward.numbba: unknown implementation 'numbba'"),
    (('"tiny-k3" = 1.2', '"tiny-k4" = 1.2'), 'forward.im2col."tiny-k4": no shape \'tiny-k4\' in the suite or [shapes]'),
    (("repeat = 2", "repeat = 2\n[shapes]\nbad = 'n=1 c=2'"), "shapes.\"bad\": shape 'n=1 c=2': missing size, k"),
    (("repeat = 2", 'repeat = 2\nimpls = ["not a module"]'), "impls.0: 'not a module' does not match"),
    (("threads = 1", "threads = = 1"), "not valid TOML"),
    (("[forward.im2col]", '[machines."amd avx512".forward.im2col]'), ""),  # a kind's tables alone: fine
    (('"tiny-k3" = 1.2', '"tiny-k3" = 1.2\n[machines.amd.forward.im2col]\n"tiny-k3" = -1'),
     'machines.amd.forward.im2col."tiny-k3": -1 is less than or equal to the minimum'),
    (('"tiny-k3" = 1.2', '"tiny-k3" = 1.2\n[machines.amd.sideways.im2col]\n"tiny-k3" = 1'),
     "'sideways' was unexpected"),
    (('"tiny-k3" = 1.2', '"tiny-k3" = 1.2\n[machines.amd.forward.im2col]\n"tiny-k4" = 1'),
     'machines.amd.forward.im2col."tiny-k4": no shape \'tiny-k4\''),
    (("repeat = 2", 'repeat = 2\nmachine = ""'), "machine: '' should be non-empty"),
])
def test_a_bad_budgets_file_is_exit_2_naming_the_key(capsys, tmp_path, no_measuring, edit, message):
    old, new = edit
    assert old in GOOD
    path = tmp_path / "budgets.toml"
    path.write_text(GOOD.replace(old, new, 1))
    if not message:  # a good file after all
        gate.read_budgets(path)
        return
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 2, out
    assert message in out and str(path) in out
    assert "Traceback" not in out


def test_the_good_file_passes_the_schema(tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text(GOOD)
    assert gate.read_budgets(path).ratios == {("forward", "im2col", "tiny-k3"): 1.2}


def test_a_file_that_no_longer_matches_the_machine_is_exit_2(capsys, monkeypatch, tmp_path):
    # A budget that was not measured (backend gone) is a set-up problem, not a slowdown.
    path = _budget_file(tmp_path)
    _fake_runs(monkeypatch, {K3: 1.0})
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 2 and "MISSING" in out


def test_init_writes_a_starter_that_passes_the_schema_and_is_not_overwritten(capsys, tmp_path):
    path = tmp_path / "perf.toml"
    code, out = _gate(capsys, "--init", "--budgets", str(path))
    assert code == 0 and "gate --update" in out
    budgets = gate.read_budgets(path)
    assert budgets.suite is None and set(budgets.shapes) == {"conv3x3", "signal-k9"}
    assert [c.name for c in budgets.cases()] == ["conv3x3", "signal-k9"] and budgets.cases()[1].ndim == 1
    code, out = _gate(capsys, "--init", "--budgets", str(path))
    assert code == 2 and "exists already" in out


# The settings of a project's own budgets file in the tests below: the reference backend only.
OWN = '''
tolerance = 1.5
threads = 1
repeat = 2
backends = ["reference"]
'''


def test_the_files_own_shapes_and_implementations_are_measured(capsys, monkeypatch, tmp_path):
    path = tmp_path / "budgets.toml"
    path.write_text(OWN + textwrap.dedent('''
        impls = ["fastconv.api:conv2d"]

        [shapes]
        "my-layer" = "n=1 c=2 size=6x6 k=2 kernel=3 pad=1"

        [forward.reference]
        "my-layer" = 10.0

        [forward."fastconv.api:conv2d"]
        "my-layer" = 1.0
    '''))
    seen = {}

    def fake(budgets, cases_, impls, repeat_runs=1):
        seen["cases"], seen["impls"] = [c.name for c in cases_], [getattr(i, "name", i) for i in impls]
        return [{("forward", "reference", "my-layer"): 10.0,
                 ("forward", "fastconv.api:conv2d", "my-layer"): 1.0}], set()
    monkeypatch.setattr(gate, "_run", fake)
    monkeypatch.setattr(gate.timing, "torch_module", lambda: object())
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 0, out
    assert seen == {"cases": ["my-layer"], "impls": ["reference", "fastconv.api:conv2d", "torch"]}
    assert gate.read_budgets(path).shapes == {"my-layer": "n=1 c=2 size=6x6 k=2 kernel=3 pad=1"}


def test_a_file_with_shapes_and_impls_round_trips(tmp_path):
    budgets = gate.Budgets({("forward", "pkg.mod:fn", "my.layer"): 1.25}, 1.5, None, 1, "float32", 2, "paired",
                           shapes={"my.layer": "n=1 c=2 size=6 k=2 kernel=3"}, impls=["pkg.mod:fn"],
                           backends=["reference"], precision="high")
    path = tmp_path / "b.toml"
    path.write_text(gate.format_budgets(budgets))
    back = gate.read_budgets(path)
    assert (back.ratios, back.shapes, back.impls, back.backends, back.precision, back.stat, back.suite) == (
        budgets.ratios, budgets.shapes, budgets.impls, budgets.backends, "high", "paired", None)


@pytest.mark.skipif(gate.timing.torch_module() is None, reason="the gate needs torch")
def test_gate_for_another_project_end_to_end(capsys, tmp_path, monkeypatch):
    """A project's own 1-D shape and own function, budgets measured by --update, then the gate."""
    (tmp_path / "theirconv.py").write_text(textwrap.dedent('''
        import fastconv

        def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
            return fastconv.conv1d(x, w, b, stride, padding, dilation, groups, backend="reference")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("theirconv", None)
    path = tmp_path / "perf.toml"
    path.write_text(OWN + textwrap.dedent('''
        impls = ["theirconv"]

        [shapes]
        "sig" = "n=2 c=3 size=40 k=4 kernel=5 pad=2:2 dil=2"
    '''))
    code, out = _gate(capsys, "--budgets", str(path), "--update", "--runs", "1")
    assert code == 0, out
    ratios = gate.read_budgets(path).ratios
    assert ("forward", "theirconv", "sig") in ratios and ("forward", "reference", "sig") in ratios
    assert ("backward", "theirconv", "sig") not in ratios  # no backward given: not measured, not budgeted
    text = path.read_text().replace("tolerance = 1.5", "tolerance = 1000.0")
    path.write_text(text)
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 0 and "gate passed" in out


@pytest.mark.parametrize("value", ["nan", "0.5", "-1", "inf"])
def test_update_refuses_a_tolerance_that_would_switch_the_gate_off(capsys, tmp_path, no_measuring, value):
    code, out = _gate(capsys, "--budgets", str(tmp_path / "b.toml"), "--update", "--tolerance", value)
    assert code == 2 and "expected a finite number at least 1" in out


# -- budgets per machine kind: ratios to torch do not carry from one CPU kind to another ----------

def _kinds_file(tmp_path):
    budgets = gate.Budgets({K3: 0.5, DW: 1.0}, tolerance=1.5, suite="tiny", machine="GenuineIntel avx512",
                           others={"AuthenticAMD avx512": {K3: 1.0, DW: 0.8}})
    path = tmp_path / "budgets.toml"
    path.write_text(gate.format_budgets(budgets))
    return path


def test_each_machine_kind_keeps_its_own_budgets_through_the_file(tmp_path):
    back = gate.read_budgets(_kinds_file(tmp_path))
    assert back.machine == "GenuineIntel avx512" and back.ratios == {K3: 0.5, DW: 1.0}
    assert back.others == {"AuthenticAMD avx512": {K3: 1.0, DW: 0.8}}
    assert back.on("GenuineIntel avx512") == (back, None)
    amd, note = back.on("AuthenticAMD avx512")
    assert amd.ratios == {K3: 1.0, DW: 0.8} and note is None
    other, note = back.on("HygonGenuine avx2")  # a kind without budgets: each entry's loosest
    assert other.ratios == {K3: 1.0, DW: 1.0}
    assert "'HygonGenuine avx2'" in note and "gate --update" in note


def test_a_file_without_kinds_applies_on_every_machine(tmp_path):
    path = _budget_file(tmp_path)
    budgets = gate.read_budgets(path)
    assert budgets.machine is None and budgets.on("anything") == (budgets, None)


@pytest.mark.parametrize("kind, code", [("AuthenticAMD avx512", 0), ("GenuineIntel avx512", 1)])
def test_the_gate_uses_the_budgets_of_the_kind_it_runs_on(capsys, monkeypatch, tmp_path, kind, code):
    path = _kinds_file(tmp_path)
    monkeypatch.setattr(gate, "machine_kind", lambda: kind)
    _fake_runs(monkeypatch, {K3: 0.95, DW: 0.8}, {K3: 0.95})  # 0.95: within AMD's 1.0, over Intel's 0.5 x 1.5
    got, out = _gate(capsys, "--budgets", str(path))
    assert got == code, out
    assert f"budgets of {kind!r}" in out


def test_on_a_kind_without_budgets_the_gate_says_so_and_uses_the_loosest(capsys, monkeypatch, tmp_path):
    path = _kinds_file(tmp_path)
    monkeypatch.setattr(gate, "machine_kind", lambda: "HygonGenuine avx2")
    _fake_runs(monkeypatch, {K3: 1.4, DW: 1.4})
    code, out = _gate(capsys, "--budgets", str(path))
    assert code == 0, out
    assert "no budgets for this machine kind ('HygonGenuine avx2'" in out


def test_update_on_another_kind_adds_its_tables_and_keeps_the_others(capsys, monkeypatch, tmp_path):
    path = _kinds_file(tmp_path)
    monkeypatch.setattr(gate, "machine_kind", lambda: "HygonGenuine avx2")
    _fake_runs(monkeypatch, {K3: 2.0, DW: 3.0})
    code, out = _gate(capsys, "--budgets", str(path), "--update", "--runs", "1")
    assert code == 0 and "machine kind 'HygonGenuine avx2'" in out
    back = gate.read_budgets(path)
    assert back.machine == "GenuineIntel avx512" and back.ratios == {K3: 0.5, DW: 1.0}
    assert back.others == {"AuthenticAMD avx512": {K3: 1.0, DW: 0.8}, "HygonGenuine avx2": {K3: 2.0, DW: 3.0}}
    monkeypatch.setattr(gate, "machine_kind", lambda: "AuthenticAMD avx512")  # and a kind's own, re-measured
    _fake_runs(monkeypatch, {K3: 1.1, DW: 0.9})
    assert _gate(capsys, "--budgets", str(path), "--update", "--runs", "1")[0] == 0
    back = gate.read_budgets(path)
    assert back.others["AuthenticAMD avx512"] == {K3: 1.1, DW: 0.9} and back.ratios == {K3: 0.5, DW: 1.0}


def test_update_of_a_file_without_kinds_records_the_kind(capsys, monkeypatch, tmp_path):
    path = _budget_file(tmp_path)
    monkeypatch.setattr(gate, "machine_kind", lambda: "AuthenticAMD avx512")
    _fake_runs(monkeypatch, {K3: 1.3, DW: 2.5})
    assert _gate(capsys, "--budgets", str(path), "--update", "--runs", "1")[0] == 0
    back = gate.read_budgets(path)
    assert back.machine == "AuthenticAMD avx512" and back.ratios == {K3: 1.3, DW: 2.5} and not back.others


def test_machine_kind_names_the_vendor_family_and_vector_width(monkeypatch):
    from fastconv import _results
    kind = _results.machine_kind()
    assert kind and kind == kind.strip() and "\n" not in kind
    # Zen 4 and Zen 5 differ by family alone (both AVX-512), and fare differently against torch
    for family, flags, want in [("25", "fpu avx2 avx512f", "AuthenticAMD family 25 avx512"),
                                ("26", "fpu avx2 avx512f", "AuthenticAMD family 26 avx512"),
                                ("26", "fpu avx2", "AuthenticAMD family 26 avx2"),
                                (None, "fpu", "AuthenticAMD")]:
        info = {"vendor_id": "AuthenticAMD", "flags": flags, "model": "17"} | ({"cpu family": family} if family else {})
        monkeypatch.setattr(_results, "_cpuinfo", lambda info=info: info)
        assert _results.machine_kind() == want
    # Intel's are all family 6: the model tells them apart (an early stop's machine and a model 167
    # put numba's 1x1 forward at 0.49x and 0.96x torch's time)
    info = {"vendor_id": "GenuineIntel", "flags": "fpu avx2 avx512f", "cpu family": "6", "model": "167"}
    monkeypatch.setattr(_results, "_cpuinfo", lambda: info)
    assert _results.machine_kind() == "GenuineIntel family 6 model 167 avx512"
