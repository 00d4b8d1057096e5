"""The CI performance-regression gate: ``fastconv gate`` (``make bench-check``).

Absolute times drift between machines and between runs on a shared one, so the gate compares each
backend's median time *divided by torch's median time measured in the same run* (same inputs,
threads and interleaved rounds, see ``fastconv._timing``) with a committed budget per pass, backend
and shape. An entry fails when its ratio exceeds ``budget * tolerance``; failures are measured a
second time and only those that fail twice count, so that one burst of load from a neighbour does
not fail CI while a real slowdown, which repeats, does. ``fastconv gate --update`` rewrites the
budgets (the median of several runs) after a deliberate change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import _timing as timing
from . import backends, cases

DEFAULT_PATH = "bench/budgets.toml"
# Used when a budget file has none; see bench/budgets.toml for the runs that chose the committed one.
DEFAULT_TOLERANCE = 1.5


@dataclass
class Budgets:
    """The committed ratios: ``ratios[(pass, backend, case)] = time / torch's time``."""

    ratios: dict[tuple[str, str, str], float] = field(default_factory=dict)
    tolerance: float = DEFAULT_TOLERANCE
    suite: str = "quick"
    # One thread: on a shared 2-core machine, two-thread runtimes stall at their barriers whenever a
    # neighbour holds a core, and torch's own time then swings by up to 100x (bench/budgets.toml).
    threads: int = 1
    dtype: str = "float32"
    repeat: int = 7
    stat: str = "best"  # of the rounds: "best" (min) or "median"; see bench/budgets.toml for why
    notes: str = ""  # the comment block at the top of the file, kept on update


def read_budgets(path) -> Budgets:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    text = Path(path).read_text()
    doc = tomllib.loads(text)
    notes = "".join(line + "\n" for line in text.splitlines() if line.startswith("#")
                    and not line.startswith("# written by"))
    ratios = {(pass_, impl, case): float(r) for pass_ in timing.PASSES
              for impl, by_case in doc.get(pass_, {}).items() for case, r in by_case.items()}
    return Budgets(ratios, float(doc.get("tolerance", DEFAULT_TOLERANCE)), doc.get("suite", "quick"),
                   int(doc.get("threads", 1)), doc.get("dtype", "float32"), int(doc.get("repeat", 7)),
                   doc.get("stat", "best"), notes)


def format_budgets(b: Budgets, how: str = "") -> str:
    """The TOML text of ``b`` (written by hand: the standard library only reads TOML); ``how``
    says when and from how many runs, on the line that each update rewrites."""
    lines = [b.notes.rstrip("\n")] if b.notes else []
    lines += ["# written by `fastconv gate --update` (make bench-budgets)" + (f": {how}" if how else ""),
              f"tolerance = {b.tolerance}", f'suite = "{b.suite}"', f"threads = {b.threads}",
              f'dtype = "{b.dtype}"', f"repeat = {b.repeat}", f'stat = "{b.stat}"']
    for pass_ in timing.PASSES:
        for impl in dict.fromkeys(i for (p, i, _) in b.ratios if p == pass_):
            lines += ["", f"[{pass_}.{impl}]"]
            lines += [f'"{case}" = {r:.3f}' for (p, i, case), r in b.ratios.items()
                      if (p, i) == (pass_, impl)]
    return "\n".join(lines) + "\n"


@dataclass
class Verdict:
    key: tuple[str, str, str]  # (pass, backend, case)
    ratio: float | None  # measured time / torch's time
    budget: float | None
    status: str  # "ok", "faster", "SLOWER", "WRONG", "MISSING", "NO BUDGET"

    @property
    def failed(self) -> bool:
        return self.status not in ("ok", "faster")

    def message(self, tolerance: float) -> str:
        pass_, impl, case = self.key
        what = f"{impl} {pass_} on {case}"
        if self.status == "SLOWER":
            return (f"{what}: {self.ratio:.2f}x torch's time, over its budget {self.budget:.2f}x "
                    f"times the tolerance {tolerance} = {self.budget * tolerance:.2f}x")
        if self.status == "WRONG":
            return f"{what}: wrong result (see the table)"
        if self.status == "MISSING":
            return f"{what}: has a budget but was not measured (backend not installed?)"
        if self.status == "NO BUDGET":
            return f"{what}: measured {self.ratio:.2f}x torch but has no budget: run `make bench-budgets`"
        if self.status == "faster":
            return f"{what}: {self.ratio:.2f}x torch, faster than its budget {self.budget:.2f}x: " \
                   "consider `make bench-budgets`"
        return f"{what}: {self.ratio:.2f}x torch (budget {self.budget:.2f}x)"


def compare(measured: dict, budgets: Budgets, wrong=()) -> list[Verdict]:
    """One verdict per entry of ``measured`` (``(pass, backend, case) -> ratio``) and of the budgets."""
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


def gate_impls() -> list[str]:
    """Every installed backend (the reference one only on the shapes it is timed on) and torch."""
    return backends.available() + [timing.TORCH]


def measure_ratios(cases_, impls, passes=timing.PASSES, *, dtype, repeat, stat="best", on_step=None):
    """``((pass, backend, case) -> time / torch's time, {keys whose result was wrong})``; threads
    are pinned by the caller."""
    results = timing.measure(cases_, impls, passes, dtype=dtype, repeat=repeat, on_step=on_step)
    ratios = {(p, i, c): r[0] for (c, p, i), r in timing.ratios(results, stat).items() if i != timing.TORCH}
    wrong = {(r.pass_, r.impl, r.case) for r in results if not r.ok}
    return ratios, wrong


def add_parser(sub) -> None:
    p = sub.add_parser("gate", help="CI: fail when a backend got slower relative to torch than its budget",
                       description="Time the budget file's suite and fail when a backend's time divided "
                       "by torch's (same run) exceeds its committed budget times the tolerance.")
    p.add_argument("--budgets", default=DEFAULT_PATH, metavar="PATH", help=f"default: {DEFAULT_PATH}")
    p.add_argument("--update", action="store_true",
                   help="measure --runs times and write the median ratios as the new budgets")
    p.add_argument("--runs", type=int, default=3, help="runs for --update (default: 3)")
    p.add_argument("--tolerance", type=float, help="with --update: the factor to allow over a budget "
                   "(default: keep the file's)")
    p.add_argument("--suite", choices=tuple(cases.SUITES),
                   help="with --update: the suite (default: the file's, else quick)")


def _run(budgets: Budgets, cases_, progress_label: str, repeat_runs: int = 1):
    from .cli import _Progress

    impls = gate_impls()
    dtype = np.dtype(budgets.dtype)
    runs, wrong = [], set()
    with timing.pinned_threads(budgets.threads):
        total = repeat_runs * timing.steps(cases_, impls, timing.PASSES, budgets.repeat)
        with _Progress(total) as progress:
            for _ in range(repeat_runs):
                ratios, bad = measure_ratios(cases_, impls, dtype=dtype, repeat=budgets.repeat,
                                             stat=budgets.stat, on_step=progress.step)
                runs.append(ratios)
                wrong |= bad
    return runs, wrong


def cmd_gate(parser, args) -> int:
    from .cli import _print, print_table

    if timing.torch_module() is None:
        parser.error("the gate normalises by torch's time in the same run, but torch is not installed")
    path = Path(args.budgets)
    if args.update:
        old = read_budgets(path) if path.exists() else Budgets()
        budgets = Budgets(tolerance=args.tolerance or old.tolerance, suite=args.suite or old.suite,
                          threads=old.threads, dtype=old.dtype, repeat=old.repeat, stat=old.stat,
                          notes=old.notes)
        runs, wrong = _run(budgets, cases.SUITES[budgets.suite], "update", repeat_runs=args.runs)
        if wrong:
            _print(f"not updating: wrong results for {sorted(wrong)}")
            return 1
        rows = []
        for key in runs[0]:
            values = [run[key] for run in runs]
            budgets.ratios[key] = float(np.median(values))
            rows.append([*key, *(f"{v:.3f}" for v in values), f"{max(values) / min(values):.2f}"])
        print_table(f"time / torch's time, {args.runs} runs", ["pass", "backend", "shape",
                    *(f"run {i + 1}" for i in range(args.runs)), "max/min"], rows, right_from=3)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        path.write_text(format_budgets(budgets, f"median of {args.runs} runs, {stamp}"))
        _print(f"wrote {path} (median of {args.runs} runs; tolerance {budgets.tolerance})")
        return 0
    if not path.exists():
        parser.error(f"no budget file at {path}: run `make bench-budgets` (fastconv gate --update) first")
    budgets = read_budgets(path)
    cases_ = cases.SUITES[budgets.suite]
    _print(f"gate: {budgets.suite} suite, {budgets.dtype}, {timing.plural(budgets.threads, 'thread')}, "
           f"the {budgets.stat} of {budgets.repeat} rounds; fail when time/torch > budget x {budgets.tolerance}")
    (measured,), wrong = _run(budgets, cases_, "gate")
    verdicts = compare(measured, budgets, wrong)
    slower = {v.key[2] for v in verdicts if v.status == "SLOWER"}
    if slower:
        # Noise on a shared machine comes in bursts; a real regression survives a second look.
        _print(f"re-measuring {len(slower)} shape(s) to confirm: {', '.join(sorted(slower))}")
        (again,), wrong2 = _run(budgets, [c for c in cases_ if c.name in slower], "confirm")
        measured = {k: min(r, again.get(k, r)) for k, r in measured.items()}
        verdicts = compare(measured, budgets, wrong | wrong2)
    rows = [[*v.key, _num(v.ratio), _num(v.budget),
             _num(v.ratio / v.budget if v.ratio and v.budget else None), v.status] for v in verdicts]
    print_table(f"time / torch's time vs {path} (fail above budget x {budgets.tolerance})",
                ["pass", "backend", "shape", "now", "budget", "now/budget", "status"], rows, right_from=3)
    failures = [v for v in verdicts if v.failed]
    for v in verdicts:
        if v.failed or v.status == "faster":
            _print(("FAIL " if v.failed else "note ") + v.message(budgets.tolerance))
    _print(f"gate FAILED: {len(failures)} of {len(verdicts)} entries" if failures
           else f"gate passed: {len(verdicts)} entries within budget")
    return 1 if failures else 0


def _num(value) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"
