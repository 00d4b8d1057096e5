"""The CI performance-regression gate: ``fastconv gate`` (``make bench-check``), for fastconv's own CI
and for any project's.

Absolute times drift between machines and between runs on a shared one, so the gate compares each
implementation's time *divided by torch's time measured in the same run* (same inputs, threads
and interleaved rounds, see ``fastconv._timing``) with a committed budget per pass,
implementation and shape. An entry fails when its ratio exceeds ``budget * tolerance``; failures
are measured a second time and only those that fail twice count, so that one burst of load from
a neighbour does not fail CI while a real slowdown, which repeats, does.

A budgets file (TOML) names its shapes (a built-in ``suite``, and/or ``[shapes]`` in the
``--shape`` grammar), the implementations (the installed backends, or ``backends = [...]``, plus
``impls = ["pkg.module:function"]``), the settings and the budgets. It is checked against a
schema (:mod:`fastconv._budgets_schema`) before anything runs. ``fastconv gate --init`` writes a
starter file, ``fastconv gate --update`` (re)writes the budgets (the median of several runs).
Exit status: 0 passed; 1 a slowdown or a wrong result; 2 a bad or mismatched file (a schema
error, a budget that was not measured, a measurement without a budget) or a bad flag.

Ratios to torch do not carry across CPU kinds: how numba's register tiles fare against oneDNN
depends on the core (numba's 1x1 forward on the quick suite: 0.49x torch's time on an Intel
AVX-512 machine, 0.96x on an AMD Zen 4, 0.50x on an AMD Zen 5, 0.96x on a later Intel Xeon). So a
file keeps budgets per machine kind (``_results.machine_kind``, the CPU's vendor, family, Intel's
model and vector width): the top-level tables for the kind named by ``machine``,
``[machines."<kind>".<pass>.<impl>]`` for others. The gate uses the tables of the kind it runs on;
on a kind with none, the loosest budget of the known kinds, with a note that says so; ``--update``
writes the tables of the kind it runs on.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import _plugins, backends, cases
from . import _timing as timing
from ._args import add_impl_flags, load_plugins, number, positive_int
from ._budgets_schema import BudgetsError, check_references, known_impls, validate
from ._console import Progress, num, print_table, say
from ._results import machine_kind

DEFAULT_PATH = "bench/budgets.toml"
# Used when a budget file has none; see bench/budgets.toml for the runs that chose the committed one.
DEFAULT_TOLERANCE = 1.5

HELP = "CI: fail when a backend (or your --impl) got slower relative to torch than its budget"
DESCRIPTION = ("Time the budgets file's shapes and fail (exit 1) when an implementation's time divided\n"
               "by torch's (same run) exceeds its committed budget times the tolerance, twice; exit 2 for a\n"
               "bad file. --init writes a starter file; --update measures and writes the budgets.")


@dataclass
class Budgets:
    """A budgets file: ``ratios[(pass, implementation, case)] = time / torch's time`` and settings."""

    ratios: dict[tuple[str, str, str], float] = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE
    suite: str | None = "quick"  # a built-in suite, or None: the [shapes] only
    # One thread: on a shared 2-core machine, two-thread runtimes stall at their barriers whenever a
    # neighbour holds a core, and torch's own time then swings by up to 100x (bench/budgets.toml).
    threads: int = 1
    dtype: str = "float32"
    repeat: int = 7
    stat: str = "best"  # of the rounds: see fastconv._timing.ratio_to and bench/budgets.toml for why
    notes: str = ""  # the comment block at the top of the file, kept on update
    shapes: dict[str, str] = field(default_factory=dict)  # name -> shape in the --shape grammar
    impls: list[str] = field(default_factory=list)  # user implementations, as for --impl
    backends: list[str] | None = None  # None: every installed backend
    precision: str | None = None  # None: fastconv's default
    machine: str | None = None  # the machine kind ``ratios`` were measured on (None: not recorded)
    others: dict[str, dict[tuple[str, str, str], float]] = field(default_factory=dict)  # other kinds' ratios

    def on(self, kind: str) -> tuple[Budgets, str | None]:
        """``(these budgets with the ratios for machine kind ``kind``, a note when that kind has none
        of its own)``: the top-level ratios where ``machine`` is ``kind`` or unrecorded and no other
        kind has tables, a kind's own tables, else each entry's loosest budget over the known kinds."""
        if kind == self.machine or (self.machine is None and not self.others):
            return self, None
        if kind in self.others:
            return dataclasses.replace(self, ratios=dict(self.others[kind])), None
        tables = [self.ratios, *self.others.values()]
        loosest = {key: max(t[key] for t in tables if key in t) for t in tables for key in t}
        known = ", ".join(repr(k) for k in [self.machine or "unrecorded", *self.others])
        return dataclasses.replace(self, ratios=loosest), (
            f"no budgets for this machine kind ({kind!r}; the file has {known}): each entry's loosest "
            "budget of those kinds applies; `fastconv gate --update` measures this kind's own")

    def cases(self) -> list[cases.Case]:
        """The suite's cases, then the file's own shapes."""
        own = [cases.parse_shape(text, name=name) for name, text in self.shapes.items()]
        return [*(cases.SUITES[self.suite] if self.suite else ()), *own]


def _toml():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return tomllib


def read_budgets(path) -> Budgets:
    """The file at ``path``, validated; ``BudgetsError`` naming every bad key otherwise."""
    tomllib = _toml()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise BudgetsError(f"{path}: cannot read it: {exc.strerror}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BudgetsError(f"{path}: not valid TOML: {exc}") from None
    validate(doc, path)
    notes = "".join(line + "\n" for line in text.splitlines()
                    if line.startswith("#") and not line.startswith("# written by"))
    shapes = doc.get("shapes", {})
    suite = doc.get("suite", None if shapes else "quick")
    budgets_ = Budgets(
        _ratios(doc), float(doc.get("tolerance", DEFAULT_TOLERANCE)), suite, doc.get("threads", 1),
        doc.get("dtype", "float32"), doc.get("repeat", 7), doc.get("stat", "best"), notes, dict(shapes),
        list(doc.get("impls", [])), doc.get("backends"), doc.get("precision"), doc.get("machine"),
        {kind: _ratios(tables) for kind, tables in doc.get("machines", {}).items()})
    problems = []
    for name, shape in shapes.items():
        try:
            cases.parse_shape(shape, name=name)
        except ValueError as exc:
            problems.append(f'shapes."{name}": {exc}')
    if suite and (clash := sorted(set(shapes) & {c.name for c in cases.SUITES[suite]})):
        problems.append(f"shapes: {', '.join(clash)} already in suite {suite!r}; rename them")
    for name in doc.get("backends", []):
        if name not in backends.NAMES:
            problems.append(f"backends: unknown backend {name!r}; choose from {', '.join(backends.NAMES)}")
    if problems:
        raise BudgetsError(f"{path}: " + "; ".join(problems))
    check_references(doc, path, {c.name for c in budgets_.cases()}, known_impls(doc))
    return budgets_


def _ratios(tables: dict) -> dict[tuple[str, str, str], float]:
    """``{(pass, implementation, case): budget}`` of a document's (or a machine kind's) pass tables."""
    return {(pass_, impl, case): float(r) for pass_ in timing.PASSES for impl, by_case in tables.get(pass_, {}).items()
            for case, r in by_case.items()}


def _key(text: str) -> str:
    """A TOML key: bare when it can be, quoted otherwise (``"pkg.mod:fn"``, shape names with dots)."""
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else json.dumps(text)


def format_budgets(b: Budgets, how: str = "") -> str:
    """The TOML text of ``b`` (written by hand: the standard library only reads TOML); ``how``
    says when and from how many runs, on the line that each update rewrites."""
    lines = [b.notes.rstrip("\n")] if b.notes else []
    lines += ["# written by `fastconv gate --update` (make bench-budgets)" + (f": {how}" if how else ""),
              f"tolerance = {b.tolerance}"]
    if b.machine:
        lines.append(f"machine = {json.dumps(b.machine)}  # the kind the top-level budgets were measured on")
    if b.suite:
        lines.append(f'suite = "{b.suite}"')
    lines += [f"threads = {b.threads}", f'dtype = "{b.dtype}"', f"repeat = {b.repeat}", f'stat = "{b.stat}"']
    if b.precision:
        lines.append(f'precision = "{b.precision}"')
    if b.backends is not None:
        lines.append(f"backends = {json.dumps(b.backends)}")
    if b.impls:
        lines.append(f"impls = {json.dumps(b.impls)}")
    if b.shapes:
        lines += ["", "[shapes]"] + [f"{_key(name)} = {json.dumps(text)}" for name, text in b.shapes.items()]
    lines += _tables(b.ratios, "")
    for kind, ratios in b.others.items():
        lines += _tables(ratios, f"machines.{json.dumps(kind)}.")
    return "\n".join(lines) + "\n"


def _tables(ratios, prefix) -> list[str]:
    """TOML lines of ``ratios``' pass tables, their headers under ``prefix``."""
    lines = []
    for pass_ in timing.PASSES:
        for impl in dict.fromkeys(i for (p, i, _) in ratios if p == pass_):
            lines += ["", f"[{prefix}{pass_}.{_key(impl)}]"]
            lines += [f"{json.dumps(case)} = {r:.3f}" for (p, i, case), r in ratios.items() if (p, i) == (pass_, impl)]
    return lines


STARTER = '''\
# Performance budgets for `fastconv gate`: per pass, implementation and shape, the time divided by
# torch's time in the same run. The gate fails (exit 1) when a ratio exceeds its budget times
# `tolerance` twice in a row; a file that breaks the schema exits 2 naming the key.
#
# 1. List your shapes under [shapes] (fastconv bench --help shows the grammar) and, in `impls`,
#    your own functions with conv2d's signature; `backends` limits fastconv's backends.
# 2. Measure the budgets on the machine kind your CI runs on, and commit this file:
#        fastconv gate --update --runs 5 --budgets {path}
# 3. In CI:  fastconv gate --budgets {path}
tolerance = 1.6
threads = 1        # 1 thread: ratios on shared CI machines are far steadier than at 2+
dtype = "float32"
repeat = 11        # interleaved rounds per measurement
stat = "best"      # best: ratio of the best rounds; median; paired: median of per-round ratios
backends = ["im2col", "numba"]
# impls = ["mypkg.conv:conv2d"]     # timed beside the backends, checked against torch

[shapes]
"conv3x3" = "n=8 c=64 size=28x28 k=64 kernel=3x3 pad=1"
"signal-k9" = "n=8 c=32 size=4000 k=32 kernel=9 pad=4"
'''


@dataclass
class Verdict:
    key: tuple[str, str, str]  # (pass, implementation, case)
    ratio: float | None  # measured time / torch's time
    budget: float | None
    status: str  # "ok", "faster", "SLOWER", "WRONG", "MISSING", "NO BUDGET"

    @property
    def failed(self) -> bool:
        return self.status not in ("ok", "faster")

    @property
    def mismatch(self) -> bool:
        """The file and the measurement disagree on what exists (exit 2), rather than on speed."""
        return self.status in ("MISSING", "NO BUDGET")

    def message(self, tolerance: float) -> str:
        pass_, impl, case = self.key
        what = f"{impl} {pass_} on {case}"
        if self.status == "SLOWER":
            return (f"{what}: {self.ratio:.2f}x torch's time, over its budget {self.budget:.2f}x "
                    f"times the tolerance {tolerance} = {self.budget * tolerance:.2f}x")
        if self.status == "WRONG":
            return f"{what}: wrong result (see the table)"
        if self.status == "MISSING":
            return f"{what}: has a budget but was not measured (backend not installed, or not supported there?)"
        if self.status == "NO BUDGET":
            return f"{what}: measured {self.ratio:.2f}x torch but has no budget: run `fastconv gate --update`"
        if self.status == "faster":
            return f"{what}: {self.ratio:.2f}x torch, faster than its budget {self.budget:.2f}x: " \
                   "consider `fastconv gate --update`"
        return f"{what}: {self.ratio:.2f}x torch (budget {self.budget:.2f}x)"


def compare(measured: dict, budgets: Budgets, wrong=()) -> list[Verdict]:
    """One verdict per entry of ``measured`` (``(pass, implementation, case) -> ratio``) and of the budgets."""
    verdicts = []
    for key in dict.fromkeys([*budgets.ratios, *measured]):
        ratio, budget = measured.get(key), budgets.ratios.get(key)
        if key in wrong:
            status = "WRONG"
        elif ratio is None:
            status = "MISSING"
        elif budget is None:
            status = "NO BUDGET"
        elif ratio > budget * budgets.tolerance:
            status = "SLOWER"
        elif ratio * budgets.tolerance < budget:
            status = "faster"
        else:
            status = "ok"
        verdicts.append(Verdict(key, ratio, budget, status))
    return verdicts


def gate_impls(budgets: Budgets, plugins=()) -> list:
    """The file's backends (default: every installed one; the reference one only on the shapes it
    is timed on), its own implementations and ``plugins``, and torch."""
    names = budgets.backends if budgets.backends is not None else backends.available()
    return [*names, *plugins, timing.TORCH]


def measure_ratios(cases_, impls, passes=timing.PASSES, *, dtype, repeat, stat="best", on_step=None):
    """``((pass, implementation, case) -> time / torch's time, {keys whose result was wrong})``;
    threads and precision are set by the caller."""
    results = timing.measure(cases_, impls, passes, dtype=dtype, repeat=repeat, on_step=on_step)
    ratios = {(p, i, c): r for (c, p, i), r in timing.ratio_to(results, stat).items() if i != timing.TORCH}
    wrong = {(r.pass_, r.impl, r.case) for r in results if not r.ok}
    return ratios, wrong


def add_flags(p) -> None:
    p.add_argument("--budgets", default=DEFAULT_PATH, metavar="PATH", help=f"default: {DEFAULT_PATH}")
    p.add_argument("--init", action="store_true", help="write a starter budgets file at --budgets and stop")
    p.add_argument("--update", action="store_true",
                   help="measure --runs times and write the median ratios as the new budgets")
    p.add_argument("--runs", type=positive_int, default=3, help="runs for --update (default: 3)")
    p.add_argument("--tolerance", type=number(1, inclusive=True, example="1.6"),
                   help="with --update: the factor to allow over a budget "
                   "(default: keep the file's)")
    p.add_argument("--suite", choices=tuple(cases.SUITES),
                   help="with --update: the suite (default: the file's, else quick)")
    add_impl_flags(p)


def _run(budgets: Budgets, cases_, impls, repeat_runs: int = 1):
    dtype = np.dtype(budgets.dtype)
    runs, wrong = [], set()
    with timing.pinned_threads(budgets.threads), timing.precision_level(budgets.precision):
        total = repeat_runs * timing.steps(cases_, impls, timing.PASSES, budgets.repeat, dtype)
        with Progress(total) as progress:
            for _ in range(repeat_runs):
                ratios, bad = measure_ratios(cases_, impls, dtype=dtype, repeat=budgets.repeat,
                                             stat=budgets.stat, on_step=progress.step)
                runs.append(ratios)
                wrong |= bad
    return runs, wrong


def _plugins_for(parser, budgets: Budgets, args) -> list:
    extra = load_plugins(parser, args)
    try:
        own = _plugins.load_all(budgets.impls)
    except ValueError as exc:
        parser.error(f"{args.budgets}: impls: {exc}")
    return own + [p for p in extra if p.name not in budgets.impls]


def _init(parser, path: Path) -> int:
    if path.exists():
        parser.error(f"{path} exists already; --init writes a new file only")
    if not path.parent.is_dir():
        parser.error(f"--init: the folder {path.parent} does not exist")
    path.write_text(STARTER.format(path=path))
    say(f"wrote {path}: edit its [shapes], then measure the budgets: fastconv gate --update --budgets {path}")
    return 0


def _update(parser, args, path: Path) -> int:
    try:
        old = read_budgets(path) if path.exists() else Budgets()
    except BudgetsError as exc:
        parser.error(str(exc))
    kind = machine_kind()
    top = old.machine in (None, kind)  # this kind's budgets are the top-level tables, else another kind's stay
    budgets = Budgets({} if top else dict(old.ratios), tolerance=args.tolerance or old.tolerance,
                      suite=args.suite or old.suite, threads=old.threads, dtype=old.dtype, repeat=old.repeat,
                      stat=old.stat, notes=old.notes, shapes=old.shapes, impls=old.impls, backends=old.backends,
                      precision=old.precision, machine=kind if top else old.machine,
                      others={k: r for k, r in old.others.items() if not (top and k == kind)})
    if top:
        new = budgets.ratios
    else:
        new = budgets.others[kind] = {}  # measured afresh, in place of any earlier ones
    plugins = _plugins_for(parser, budgets, args)
    budgets.impls = [p.name for p in plugins]
    runs, wrong = _run(budgets, budgets.cases(), gate_impls(budgets, plugins), repeat_runs=args.runs)
    if wrong:
        say(f"not updating: wrong results for {sorted(wrong)}")
        return 1
    rows = []
    for key in runs[0]:
        values = [run[key] for run in runs]
        new[key] = float(np.median(values))
        rows.append([*key, *(f"{v:.3f}" for v in values), f"{max(values) / min(values):.2f}"])
    print_table(f"time / torch's time, {args.runs} runs", ["pass", "backend", "shape",
                *(f"run {i + 1}" for i in range(args.runs)), "max/min"], rows, right_from=3)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    path.write_text(format_budgets(budgets, f"median of {args.runs} runs, {stamp}"))
    say(f"wrote {path}: the budgets of machine kind {kind!r} (median of {args.runs} runs; tolerance "
        f"{budgets.tolerance})")
    return 0


def cmd_gate(parser, args) -> int:
    path = Path(args.budgets)
    if args.init:
        return _init(parser, path)
    if timing.torch_module() is None:
        parser.error("the gate normalises by torch's time in the same run, but torch is not installed")
    if args.update:
        return _update(parser, args, path)
    if not path.exists():
        parser.error(f"no budget file at {path}: `fastconv gate --init --budgets {path}` writes a starter, "
                     "`make bench-budgets` re-measures fastconv's own")
    try:
        budgets, no_own = read_budgets(path).on(kind := machine_kind())
    except BudgetsError as exc:
        parser.error(str(exc))
    cases_ = budgets.cases()
    impls = gate_impls(budgets, _plugins_for(parser, budgets, args))
    where = " + ".join(filter(None, [f"{budgets.suite} suite" if budgets.suite else "",
                                     f"{len(budgets.shapes)} shapes of the file" if budgets.shapes else ""]))
    say(f"gate: {where}, {budgets.dtype}, {timing.plural(budgets.threads, 'thread')}, the {budgets.stat} of "
        f"{budgets.repeat} rounds; fail when time/torch > budget x {budgets.tolerance}; budgets of {kind!r}")
    if no_own:
        say(f"note {no_own}")
    (measured,), wrong = _run(budgets, cases_, impls)
    verdicts = compare(measured, budgets, wrong)
    slower = {v.key[2] for v in verdicts if v.status == "SLOWER"}
    if slower:
        # Noise on a shared machine comes in bursts; a real regression survives a second look.
        say(f"re-measuring {len(slower)} shape(s) to confirm: {', '.join(sorted(slower))}")
        (again,), wrong2 = _run(budgets, [c for c in cases_ if c.name in slower], impls)
        measured = {k: min(r, again.get(k, r)) for k, r in measured.items()}
        verdicts = compare(measured, budgets, wrong | wrong2)
    rows = [[*v.key, num(v.ratio), num(v.budget), num(v.ratio / v.budget if v.ratio and v.budget else None),
             v.status] for v in verdicts]
    print_table(f"time / torch's time vs {path} (fail above budget x {budgets.tolerance})",
                ["pass", "backend", "shape", "now", "budget", "now/budget", "status"], rows, right_from=3)
    failures = [v for v in verdicts if v.failed]
    for v in verdicts:
        if v.failed or v.status == "faster":
            say(("FAIL " if v.failed else "note ") + v.message(budgets.tolerance))
    if not failures:
        say(f"gate passed: {len(verdicts)} entries within budget")
        return 0
    say(f"gate FAILED: {len(failures)} of {len(verdicts)} entries")
    # Exit 1 is kept for what a code change did (slower, wrong); a file that no longer matches
    # what is installed is a set-up problem, like a bad file.
    return 2 if all(v.mismatch for v in failures) else 1
