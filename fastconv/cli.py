"""The ``fastconv`` command: ``bench`` (time backends against torch), ``check`` (compare their results
with torch's), ``info`` (what this machine runs), ``compare`` (two saved runs) and ``gate`` (the
CI performance-regression gate).

Every subcommand is one entry of :data:`SUBCOMMANDS`: its help line, a function adding its flags
and a function ``run(parser, args) -> exit status``; :func:`main` dispatches through that table
only. Exit status: 0 success, 1 a slowdown or a wrong result, 2 a usage error (bad flag, bad file).
Parsing is stdlib argparse, whose choices come from the backend registry and the suites so that
``--help`` stays current; output goes through :mod:`fastconv._console` (``rich`` when installed).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import __version__, _cache, _compare, _gate, _precision, _results, backends, cases
from . import _timing as timing
from ._args import add_impl_flags, impl_list, impl_names, load_plugins, positive_int, shape
from ._console import Progress, ms, num, print_table, say, spread, warn
from .api import choose_backend

DTYPES = ("float32", "float64")


def _selection(parser, args, *, with_torch: bool = True) -> tuple[list[cases.Case], list]:
    """The cases and implementations the flags ask for, or a usage error saying what is missing."""
    selected = args.shape or list(cases.SUITES[args.suite])
    if args.backends:
        impls = list(dict.fromkeys(args.backends))
    else:
        impls = [*backends.available(), timing.AUTO, *([timing.TORCH] if with_torch and timing.torch_module() else [])]
    for impl in impls:
        if impl == timing.TORCH and timing.torch_module() is None:
            parser.error("backend 'torch' needs PyTorch, which is not installed: pip install torch")
        if impl not in (timing.TORCH, timing.AUTO) and impl not in backends.available():
            try:
                backends.get(impl)
            except ImportError as exc:
                parser.error(f"{exc}; available here: {', '.join(backends.available())}")
    return selected, impls + load_plugins(parser, args)


def _add_selection_flags(p: argparse.ArgumentParser, *, suite_default: str = "default") -> None:
    p.add_argument("--suite", choices=tuple(cases.SUITES), default=suite_default,
                   help=f"named set of shapes (default: {suite_default}); see fastconv/cases.py")
    p.add_argument("--shape", type=shape, action="append", metavar="SHAPE",
                   help="a shape of your own instead of the suite (repeatable): 'n=8 c=64 size=56x56 k=64 "
                   "kernel=3x3 pad=1' (any axes, stride, pad, dil per axis; see `fastconv bench --help`) "
                   "or 8,64,56,56,64,3,1,1")
    p.add_argument("--backends", type=impl_list, action="extend", metavar="NAME[,NAME...]",
                   help=f"which of {', '.join(impl_names())} (default: every installed backend, auto and torch)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="default: float32")
    add_impl_flags(p)


# -- bench ----------------------------------------------------------------------------------------

def _bench_flags(p: argparse.ArgumentParser) -> None:
    _add_selection_flags(p)
    p.add_argument("--pass", dest="passes", choices=("forward", "backward", "both"), default="both",
                   help="forward, backward (input + weight gradients) or both (default)")
    p.add_argument("--threads", type=positive_int, default=timing.default_threads(),
                   help="threads for BLAS, numba and torch alike (default: this machine's usable CPUs, "
                   f"{timing.default_threads()})")
    p.add_argument("--repeat", type=positive_int, default=7, help="interleaved timed rounds (default: 7)")
    p.add_argument("--precision", choices=_precision.PRECISIONS, default=None,
                   help="fastconv.set_precision for the run (default: the current level, highest)")
    p.add_argument("--json", metavar="PATH", help="also save the run (environment, raw samples, ratios) as JSON, "
                   "for `fastconv compare`")
    p.add_argument("--pytest-benchmark", metavar="PATH", dest="pytest_benchmark",
                   help="also save the run in pytest-benchmark's JSON format (`pytest-benchmark compare PATH`)")
    p.add_argument("--plot", metavar="PATH.png", help="also draw a bar chart per shape (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_outputs(parser, args) -> None:
    """Every output path and optional dependency, before anything is measured."""
    for flag, path in (("--json", args.json), ("--pytest-benchmark", args.pytest_benchmark),
                       ("--plot", args.plot)):
        if path:
            try:
                _results.check_writable(path, flag)
            except ValueError as exc:
                parser.error(str(exc))
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'fastconv[plot]'")
    if args.pytest_benchmark:
        try:
            import pytest_benchmark  # noqa: F401
        except ImportError:
            parser.error("--pytest-benchmark needs pytest-benchmark: pip install pytest-benchmark")
    usable = timing.default_threads()
    if args.threads > usable:
        warn(f"--threads {args.threads} is more than the {usable} CPUs this process may use: threads will "
             "share cores and the timings measure oversubscription")


@dataclass
class Summary:
    """Ratios of one implementation, pass and shape to torch (or to the fastest): the median of the
    per-round ratios and their range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values) -> Summary:
        if values is None or len(values) == 0:
            return cls(math.nan, math.nan, math.nan)
        return cls(float(np.median(values)), float(np.min(values)), float(np.max(values)))

    def text(self) -> str:
        return spread(self.median, self.low, self.high)

    def as_dict(self) -> dict:
        return {"median": self.median, "min": self.low, "max": self.high}


def bench_report(results, cases_, passes, peak: float, dtype) -> list[dict]:
    """Print one table per shape and return the rows as dicts (for ``--json``); each row names
    auto's pick for its shape."""
    to_torch, to_fastest = timing.per_round(results, timing.TORCH), timing.per_round(results, None)
    have_torch = any(r.impl == timing.TORCH and r.times for r in results)
    with_algorithm = any(r.algorithm for r in results)
    rows_out = []
    for case in cases_:
        rows: list[list[str] | None] = []
        for pass_ in passes:
            try:  # auto's picks: the forward's, or the input and the weight gradient's
                auto = timing.auto_picks(case, dtype, pass_)
            except (ValueError, TypeError):  # a shape no installed backend runs
                auto = [None]
            if rows:
                rows.append(None)
            for r in (r for r in results if r.case == case.name and r.pass_ == pass_ and not r.skipped):
                key = (r.case, r.pass_, r.impl)
                vs_torch, vs_fastest = Summary.of(to_torch.get(key)), Summary.of(to_fastest.get(key))
                notes = []
                if r.impl in auto:
                    notes.append("auto" if len(auto) == 1 else
                                 f"auto: {'input' if r.impl == auto[0] else 'weight'} gradient")
                if not r.ok:
                    notes.append(f"WRONG (error {r.error:.1e})")
                if r.times and r.warmup_s > 5 * r.median and r.warmup_s > 0.5:
                    notes.append(f"first call {r.warmup_s:.1f} s")
                pct = 100 * r.gflops / peak if r.times else math.nan
                rows.append([pass_, r.impl, *([r.algorithm or "-"] if with_algorithm else []), ms(r.median),
                             ms(r.best), num(r.gflops if r.times else math.nan, 1), num(pct, 0),
                             vs_torch.text() if have_torch else "-", num(vs_fastest.median),
                             "-" if r.error is None else f"{r.error:.0e}", ", ".join(notes)])
                picks = None if None in auto else " + ".join(auto)  # as the algorithm column
                rows_out.append(r.as_dict() | {"ratio_torch": vs_torch.as_dict(), "ratio_fastest": vs_fastest.as_dict(),
                                                 "pct_peak": pct, "auto": picks})
        print_table(f"{case.name}: {cases.describe(case)}",
                    ["pass", "backend", *(["algorithm"] if with_algorithm else []), "median ms", "min ms",
                     "eff. GFLOP/s", "%peak", "x torch [range]", "x fastest", "error", "note"], rows,
                    right_from=3 if with_algorithm else 2)
    return rows_out


def geomean_summary(results, passes) -> list[dict]:
    """Per implementation and pass: the geometric mean over shapes of the median per-round ratio
    to torch, the range of the per-round geomeans, and the worst shape; auto's entries also say
    how far it is from the fastest backend timed (geomean and worst). Printed and returned."""
    to_torch = timing.per_round(results, timing.TORCH)
    impls = list(dict.fromkeys(i for (_, _, i) in to_torch if i != timing.TORCH))  # those timed somewhere
    ours = {*backends.available(), timing.AUTO}  # auto over the fastest of fastconv's, itself included
    to_fastest = timing.per_round([r for r in results if r.impl in ours], None)
    rows, out = [], []
    for impl in impls:
        row = [impl]
        for pass_ in passes:
            keys = [k for k in to_torch if k[2] == impl and k[1] == pass_]
            if keys:
                medians = [float(np.median(to_torch[k])) for k in keys]
                geo = math.exp(np.mean(np.log(medians)))
                rounds = timing.geomean_per_round([to_torch[k] for k in keys])
                entry = {"impl": impl, "pass": pass_, "shapes": len(keys), "geomean": geo,
                         "round_geomean_min": float(rounds.min()), "round_geomean_max": float(rounds.max()),
                         "worst": max(medians)}
                off = [float(np.median(to_fastest[k])) for k in keys if k in to_fastest] \
                    if impl == timing.AUTO else []  # how far auto is from the fastest backend timed
                if off:
                    entry |= {"fastest_geomean": math.exp(np.mean(np.log(off))), "fastest_worst": max(off)}
                out.append(entry)
                row += [spread(geo, entry["round_geomean_min"], entry["round_geomean_max"]), num(max(medians))]
            else:
                row += ["-", "-"]
        rows.append(row)
    cols = ["backend"] + [f"{p} {s}" for p in passes for s in ("geomean [rounds' range]", "worst")]
    print_table("time / torch's time over the shapes above (median of per-round ratios)", cols, rows)
    for entry in (e for e in out if "fastest_geomean" in e):
        say(f"auto ({entry['pass']}): {entry['fastest_geomean']:.2f}x the fastest backend's time (geomean), "
            f"{entry['fastest_worst']:.2f}x at worst, its choice and the choosing timed")
    return out


def _plot(path: str, results, cases_, passes) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(c, p) for c in cases_ for p in passes]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (case, pass_) in zip(axes.flat, panels):
        timed = [r for r in results if r.case == case.name and r.pass_ == pass_ and r.times]
        ax.barh([r.impl for r in timed], [r.median * 1e3 for r in timed],
                xerr=[[(r.median - r.best) * 1e3 for r in timed], [(max(r.times) - r.median) * 1e3 for r in timed]],
                color=["tab:gray" if r.impl == timing.TORCH else "tab:blue" for r in timed])
        ax.invert_yaxis()
        ax.set_title(f"{case.name} {pass_}", fontsize=9)
        ax.set_xlabel("median ms, bars: range of rounds", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _case_record(c: cases.Case) -> dict:
    return {"name": c.name, "function": c.function, "n": c.n, "c_in": c.c_in, "size": list(c.size),
            "c_out": c.c_out, "kernel": list(c.kernel), "stride": list(c.stride),
            "padding": [list(p) for p in c.padding], "groups": c.groups, "dilation": list(c.dilation),
            "macs": c.macs}


def cmd_bench(parser, args) -> int:
    _check_outputs(parser, args)
    cases_, impls = _selection(parser, args)
    passes = list(timing.PASSES) if args.passes == "both" else [args.passes]
    dtype = np.dtype(args.dtype)
    have_torch = timing.TORCH in impls
    with timing.pinned_threads(args.threads), timing.precision_level(args.precision) as level:
        peak = timing.matmul_peak(dtype)
        threads, rounds = timing.plural(args.threads, "thread"), timing.plural(args.repeat, "interleaved round")
        say(f"fastconv {__version__} · {dtype} · precision {level} · {threads} for BLAS, numba and torch alike · "
            f"{rounds}, ratios are medians of per-round ratios · {peak.describe(dtype)}")
        if timing.torch_module() is None:
            say("No baseline: torch is not installed, so the 'x torch' column is empty and results "
                "are checked against the reference backend on small shapes only "
                "(pip install torch to compare).")
        elif not have_torch:
            say("No baseline: torch was not selected, so the 'x torch' column is empty "
                "(results are still checked against torch).")
        skipped = sorted({timing.skip_reason(i, c, dtype) or timing.pass_skip_reason(i, c, p)
                          for i in impls for c in cases_ for p in passes} - {None})
        for reason in skipped:
            say(f"Not timed on every shape: {reason}.")
        environment = _results.environment()  # inside the pinning: the thread settings of the run
        total = timing.steps(cases_, impls, passes, args.repeat, dtype)
        with Progress(total, enabled=not args.no_progress) as progress:
            results = timing.measure(cases_, impls, passes, dtype=dtype, repeat=args.repeat, on_step=progress.step)
    rows = bench_report(results, cases_, passes, peak.gflops, dtype)
    summary = geomean_summary(results, passes) if have_torch and len(cases_) > 1 else []
    doc = {"format": _results.FORMAT, "format_version": _results.FORMAT_VERSION, "environment": environment,
           "settings": {"dtype": str(dtype), "threads": args.threads, "repeat": args.repeat, "precision": level,
                        "passes": passes, "suite": None if args.shape else args.suite,
                        "impls": [timing.name_of(i) for i in impls], "min_sample_s": timing.MIN_SAMPLE_S,
                        "lead_in_s": timing.LEAD_IN_S,
                        "settle_s": timing.settle_s(args.threads)},
           "matmul_peak": {"gflops": peak.gflops, "size": peak.size,
                           "samples": {str(k): v for k, v in peak.samples.items()}},
           "cases": [_case_record(c) for c in cases_], "results": rows, "summary": summary}
    for path, content in ((args.json, doc), (args.pytest_benchmark, None)):
        if path:
            _results.write(path, content or _results.pytest_benchmark(doc))
            say(f"wrote {path}")
    if args.plot:
        _plot(args.plot, results, cases_, passes)
        say(f"wrote {args.plot}")
    wrong = [r for r in results if not r.ok]
    for r in wrong:
        say(f"WRONG RESULT: {r.impl} {r.pass_} on {r.case}: error {r.error:.2e}")
    return 1 if wrong else 0


# -- check ------------------------------------------------------------------------------------------

def cmd_check(parser, args) -> int:
    cases_, impls = _selection(parser, args, with_torch=False)
    impls = [i for i in impls if i != timing.TORCH]
    dtype = np.dtype(args.dtype)
    torch = timing.torch_module()
    oracle = "torch" if torch else "the reference backend"
    if torch is None:
        say("torch is not installed: comparing with the reference backend (slow on large shapes).")
    tol = timing.TOLERANCE[dtype]
    rows, failed = [], 0
    for case in cases_:
        problem = timing.Problem(case, dtype)
        for pass_ in timing.PASSES:
            for impl in impls:
                name = timing.name_of(impl)
                if impl == "reference" and torch is None:
                    continue  # it is the oracle
                reason = timing.skip_reason(impl, case, dtype) or timing.pass_skip_reason(impl, case, pass_)
                if reason and not reason.startswith("reference is timed only"):
                    rows.append([case.name, pass_, name, "-", f"skipped: {reason}"])
                    continue
                if reason:
                    rows.append([case.name, pass_, name, "-", "skipped (slow on purpose)"])
                    continue
                err = problem.error(problem.runner(impl, pass_)(), pass_, slow_ok=True)
                ok = err is not None and err <= tol
                failed += not ok
                rows.append([case.name, pass_, name, "-" if err is None else f"{err:.1e}", "pass" if ok else "FAIL"])
    print_table(f"largest |error| / max|expected| vs {oracle}, {dtype} (tolerance {tol:.0e})",
                ["shape", "pass", "backend", "max error", "result"], rows, right_from=3)
    say(f"{failed} failed" if failed else "all passed")
    return 1 if failed else 0


# -- info -------------------------------------------------------------------------------------------

def cmd_info(parser, args) -> int:
    from threadpoolctl import threadpool_info

    rows = [["fastconv", __version__], ["python", sys.version.split()[0]], ["numpy", np.__version__]]
    for pool in threadpool_info():
        library = pool["filepath"].rsplit("/", 1)[-1]
        rows.append([f"{pool['user_api']} ({pool['internal_api']})",
                     f"{pool['version']} · {pool['num_threads']} threads · {library}"])
    numba_line = _results.version("numba")
    if numba_line and "numba" in backends.available():
        numba_line += f" · {backends.get('numba').describe()}"  # compiles nothing
    rows.append(["numba", numba_line or "not installed"])
    torch = timing.torch_module()
    rows.append(["torch", f"{torch.__version__} · {torch.get_num_threads()} threads" if torch else "not installed"])
    rows.append(["cpu", f"{_results.cpu_name()} · {os.cpu_count()} CPUs, "
                 f"{timing.default_threads()} usable"])
    missing = [name for name in backends.NAMES if name not in backends.available()]
    rows.append(["backends", ", ".join(backends.available())
                 + (f" (not installed: {', '.join(missing)})" if missing else "")])
    print_table("fastconv info", ["", ""], rows)
    # the picks of a warm process: kernels in the disk cache are loaded first (about a second)
    loading = backends.wait_ready([name for name in backends.available() if name != "reference"], np.float32)
    picks = []
    for c in cases.SUITES[args.suite]:
        try:
            pick = choose_backend(c.x_shape, c.w_shape, **c.kwargs)
        except (ValueError, TypeError) as exc:
            pick = f"- ({exc})"
        picks.append([c.name, cases.describe(c), pick])
    print_table(f'backend="auto" on the {args.suite} suite (float32)', ["shape", "geometry", "auto"], picks,
                right_from=3)
    if loading:
        print(f"(picked while {', '.join(sorted(loading))} still compiles: auto runs another backend until then; "
              f"`fastconv warmup` compiles ahead of time)")
    if args.time_auto != "none":
        _check_auto_rule(cases.SUITES[args.time_auto], args.time_auto)
    return 0


def _check_auto_rule(suite, name: str) -> None:
    """Time auto's candidates on ``suite`` and say where the rule's pick is not the fastest here
    (a rule measured on one machine can be wrong on another)."""
    print(f"timing auto's candidates (forward + both gradients, best of 3) on the {name} suite ...", flush=True)
    rows, wrong = [], 0
    names = {c.geometry: c.name for c in suite}
    checked, compiling = backends.rule_check(list(names), np.float32)
    if compiling:
        print(f"not timed, their kernels are not compiled yet: {', '.join(sorted(compiling))} "
              f"(`fastconv warmup` compiles them)")
    for geom, pick, times in checked:  # shapes with a choice to make
        fastest = min(times, key=times.get)
        slower = times[pick] / times[fastest]
        wrong += slower > AUTO_RULE_SLACK
        rows.append([names[geom], pick, fastest, f"{slower:.2f}",
                     "  ".join(f"{n} {t * 1e3:.3g} ms" for n, t in times.items())])
    print_table("auto's rule against the fastest candidate here", ["shape", "rule picks", "fastest", "pick / fastest",
                                                                   "times"], rows, right_from=3)
    if wrong:
        print(f"auto's rule picks a backend over {AUTO_RULE_SLACK:.2f}x slower than the fastest on {wrong} of "
              f"{len(rows)} shapes here: set FASTCONV_AUTO=measure to time the candidates on each new shape "
              f"instead (the choices are saved in {backends._choices_file().parent} and reused).")
    else:
        print(f"auto's rule picks the fastest candidate here (within {AUTO_RULE_SLACK:.2f}x) on every shape timed.")


AUTO_RULE_SLACK = 1.15  # single timings on a shared machine move by this much; beyond it, the rule is wrong


def _info_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", choices=tuple(cases.SUITES), default="default",
                   help="the shapes whose auto choice is listed (default: default)")
    p.add_argument("--time-auto", choices=(*cases.SUITES, "none"), default="quick", metavar="SUITE",
                   help="time auto's candidates on these shapes and say where the rule is wrong here "
                        "(default: quick, a few seconds; none to skip)")


# -- the table of subcommands -------------------------------------------------------------------

@dataclass(frozen=True)
class Subcommand:
    """One ``fastconv`` subcommand: ``add_flags(subparser)`` and ``run(parser, args) -> exit status``."""

    help: str
    description: str
    add_flags: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.ArgumentParser, argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {
    "bench": Subcommand(
        "time every backend and torch side by side, one table per shape",
        "Time each backend, torch and your own --impl on a suite of shapes, in the same run, on the\n"
        "same threads and interleaved rounds; print median time, effective GFLOP/s (direct-convolution\n"
        "FLOPs over time), % of the matrix-product peak, and ratios to torch and to the fastest\n"
        "(medians of per-round ratios, with their range).\n\n" + cases.SHAPE_HELP, _bench_flags, cmd_bench),
    "check": Subcommand(
        "compare every backend with torch (or the reference backend)",
        "Run every backend once per shape and pass and compare with torch (or with the reference backend "
        "when torch is absent); exit 1 on any mismatch.", _add_selection_flags, cmd_check),
    "info": Subcommand("versions, BLAS, threads, CPU, backends and what auto picks",
                       "Versions, BLAS, threads, CPU, backends and what auto picks.", _info_flags, cmd_info),
    "compare": Subcommand(_compare.HELP, _compare.DESCRIPTION, _compare.add_flags, _compare.cmd_compare),
    "gate": Subcommand(_gate.HELP, _gate.DESCRIPTION, _gate.add_flags, _gate.cmd_gate),
    "warmup": Subcommand(_cache.WARMUP_HELP, _cache.WARMUP_DESCRIPTION, _cache.warmup_flags, _cache.cmd_warmup),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastconv", description="Fast 1-, 2- and 3-D convolution on NumPy "
                                     "arrays: benchmark and check the backends on this machine.")
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_flags(p)
        p.set_defaults(run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastconv`` console script and of ``python -m fastconv``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(parser, args)


if __name__ == "__main__":
    sys.exit(main())
