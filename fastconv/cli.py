"""The ``fastconv`` command: ``bench`` (time backends against torch), ``check`` (compare their results
with torch's), ``info`` (what this machine runs) and ``gate`` (the CI performance-regression gate).

Parsing is stdlib argparse, whose choices come from the backend registry and the suites so that
``--help`` stays current; tables and the progress bar use ``rich`` (the ``cli`` extra) when it is
installed and plain text otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys

import numpy as np

from . import __version__, backends, cases
from . import _timing as timing
from .api import choose_backend

IMPLS = (*backends.NAMES, timing.TORCH)
DTYPES = ("float32", "float64")


# -- output: rich when installed, plain text otherwise ------------------------------------------

def _rich_console():
    try:
        from rich.console import Console
    except ImportError:
        return None
    # Piped output (a file, CI logs, the README) is not a terminal; rich would squeeze it to 80 columns.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "150"))
    return Console(highlight=False, width=width)


def _print(text: str = "") -> None:
    console = _rich_console()
    if console is None:
        print(text)
    else:
        console.print(text, markup=False, soft_wrap=True)


def print_table(title: str, columns: list[str], rows: list[list[str] | None], right_from: int = 1) -> None:
    """A table with a title; a ``None`` row draws a separator. Columns from ``right_from`` on are
    right-aligned (numbers)."""
    console = _rich_console()
    if console is not None:
        from rich.table import Table

        table = Table(title=title, title_justify="left", title_style="bold")
        for i, col in enumerate(columns):
            table.add_column(col, justify="right" if i >= right_from else "left", no_wrap=True)
        for row in rows:
            if row is None:
                table.add_section()
            else:
                table.add_row(*row)
        console.print(table)
        return
    body = [r for r in rows if r is not None]
    widths = [max(len(str(c)) for c in col) for col in zip(columns, *body)]

    def line(cells):
        return "  ".join(str(c).rjust(wd) if i >= right_from else str(c).ljust(wd)
                         for i, (c, wd) in enumerate(zip(cells, widths)))
    print(title)
    print(line(columns))
    print("  ".join("-" * wd for wd in widths))
    for row in rows:
        print("  ".join("-" * wd for wd in widths) if row is None else line(row))
    print()


class _Progress:
    """A progress bar on stderr (rich), or nothing when rich is absent or output is not a terminal."""

    def __init__(self, total: int, enabled: bool = True):
        self.bar = None
        if enabled:
            try:
                from rich.console import Console
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            except ImportError:
                return
            self.bar = Progress(TextColumn("{task.description:<40}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("warming up", total=total)

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def step(self, description: str) -> None:
        if self.bar:
            self.bar.update(self.task, advance=1, description=description)


# -- argument types: each error names the flag's field and lists the choices --------------------

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int; got {text!r}")
    return value


def _shape(text: str) -> cases.Case:
    try:
        return cases.parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _impl_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in IMPLS:
            choices = ", ".join(IMPLS)
            raise argparse.ArgumentTypeError(f"unknown backend {name!r}; choose from {choices}")
    return names


def _selection(parser, args, *, with_torch: bool = True) -> tuple[list[cases.Case], list[str]]:
    """The cases and implementations the flags ask for, or a usage error saying what is missing."""
    selected = args.shape or list(cases.SUITES[args.suite])
    if args.backends:
        impls = list(dict.fromkeys(args.backends))
    else:
        impls = backends.available() + ([timing.TORCH] if with_torch and timing.torch_module() else [])
    for impl in impls:
        if impl == timing.TORCH and timing.torch_module() is None:
            parser.error("backend 'torch' needs PyTorch, which is not installed: pip install torch")
        if impl != timing.TORCH and impl not in backends.available():
            try:
                backends.get(impl)
            except ImportError as exc:
                parser.error(f"{exc}; available here: {', '.join(backends.available())}")
    return selected, impls


def _add_selection_flags(p: argparse.ArgumentParser, *, suite_default: str = "default") -> None:
    p.add_argument("--suite", choices=tuple(cases.SUITES), default=suite_default,
                   help=f"named set of shapes (default: {suite_default}); see fastconv/cases.py")
    p.add_argument("--shape", type=_shape, action="append", metavar=cases.SHAPE_FORMAT,
                   help="a shape of your own instead of the suite, e.g. 8,64,56,56,64,3,1,1 (repeatable)")
    p.add_argument("--backends", type=_impl_list, action="extend", metavar="NAME[,NAME...]",
                   help=f"which of {', '.join(IMPLS)} (default: every installed backend, plus torch)")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="default: float32")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastconv", description="Fast 2-D convolution on NumPy arrays: "
                                     "benchmark and check the backends on this machine.")
    parser.add_argument("--version", action="version", version=f"fastconv {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{bench,check,info,gate}")

    bench = sub.add_parser("bench", help="time every backend and torch side by side, one table per shape",
                           description="Time each backend and torch on a suite of shapes, in the same run "
                           "and on the same threads; print median time, GFLOP/s, % of the matrix-product "
                           "peak, and ratios to torch and to the fastest.")
    _add_selection_flags(bench)
    bench.add_argument("--pass", dest="passes", choices=("forward", "backward", "both"), default="both",
                       help="forward, backward (input + weight gradients) or both (default)")
    bench.add_argument("--threads", type=_positive_int, default=timing.default_threads(),
                       help="threads for BLAS, numba and torch alike (default: this machine's CPUs, "
                       f"{timing.default_threads()})")
    bench.add_argument("--repeat", type=_positive_int, default=7, help="timed rounds; the median is shown "
                       "(default: 7)")
    bench.add_argument("--json", metavar="PATH", help="also write every timing to PATH as JSON")
    bench.add_argument("--plot", metavar="PATH.png",
                       help="also draw a bar chart per shape (needs matplotlib)")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")

    check = sub.add_parser("check", help="compare every backend with torch (or the reference backend)",
                           description="Run every backend once per shape and pass and compare with torch "
                           "(or with the reference backend when torch is absent); exit 1 on any mismatch.")
    _add_selection_flags(check)

    info = sub.add_parser("info", help="versions, BLAS, threads, CPU, backends and what auto picks")
    info.add_argument("--suite", choices=tuple(cases.SUITES), default="default",
                      help="the shapes whose auto choice is listed (default: default)")

    from . import _gate

    _gate.add_parser(sub)
    return parser


# -- sub-commands -------------------------------------------------------------------------------

def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _ms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.1f}"


def _describe(case: cases.Case) -> str:
    extra = "".join(f" {k}{v}" for k, v in (("g", case.groups), ("d", case.dilation)) if v != 1)
    return (f"x({case.n},{case.c_in},{case.ih},{case.iw}) -> {case.c_out}ch k{case.k} s{case.stride} "
            f"p{case.pad}{extra} · {2 * case.macs / 1e9:.3g} GFLOP fwd")


def bench_report(results, cases_, passes, peak: float, dtype) -> list[dict]:
    """Print one table per shape and return the rows as dicts (for ``--json``)."""
    ratio = timing.ratios(results)
    have_torch = any(r.impl == timing.TORCH for r in results)
    rows_out = []
    for case in cases_:
        auto = choose_backend(case.x_shape, case.w_shape, **case.kwargs, dtype=dtype)
        rows: list[list[str] | None] = []
        for pass_ in passes:
            if rows:
                rows.append(None)
            for r in (r for r in results if r.case == case.name and r.pass_ == pass_ and not r.skipped):
                vs_torch, vs_fastest = ratio.get((r.case, r.pass_, r.impl), (math.nan, math.nan))
                notes = []
                if r.impl == auto:
                    notes.append("auto")
                if not r.ok:
                    notes.append(f"WRONG (error {r.error:.1e})")
                if r.times and r.warmup_s > 5 * r.median and r.warmup_s > 0.5:
                    notes.append(f"first call {r.warmup_s:.1f} s")
                pct = 100 * r.gflops / peak if r.times else math.nan
                rows.append([pass_, r.impl, _ms(r.median), _ms(min(r.times, default=math.nan)),
                             _fmt(r.gflops if r.times else math.nan, 1), _fmt(pct, 0),
                             _fmt(vs_torch) if have_torch else "-", _fmt(vs_fastest),
                             "-" if r.error is None else f"{r.error:.0e}", ", ".join(notes)])
                rows_out.append(r.as_dict() | {"ratio_torch": vs_torch, "ratio_fastest": vs_fastest,
                                                 "pct_peak": pct, "auto": auto})
        print_table(f"{case.name}: {_describe(case)}",
                    ["pass", "backend", "median ms", "min ms", "GFLOP/s", "%peak", "x torch", "x fastest",
                     "error", "note"], rows, right_from=2)
    return rows_out


def _geomean_summary(results, passes) -> None:
    """Geometric mean of the ratio to torch per backend and pass: the figures the backend issues set."""
    ratio = timing.ratios(results)
    impls = list(dict.fromkeys(r.impl for r in results if r.impl != timing.TORCH))
    rows = []
    for impl in impls:
        row = [impl]
        for pass_ in passes:
            vals = [v[0] for (_, p, i), v in ratio.items()
                    if i == impl and p == pass_ and math.isfinite(v[0])]
            row += [_fmt(math.exp(np.mean(np.log(vals))) if vals else math.nan),
                    _fmt(max(vals) if vals else math.nan)]
        rows.append(row)
    cols = ["backend"] + [f"{p} {s}" for p in passes for s in ("geomean", "worst")]
    print_table("time / torch's time over the shapes above", cols, rows)


def _plot(path: str, results, cases_, passes) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("fastconv bench: --plot needs matplotlib: pip install 'fastconv[plot]'") from None
    panels = [(c, p) for c in cases_ for p in passes]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (case, pass_) in zip(axes.flat, panels):
        timed = [r for r in results if r.case == case.name and r.pass_ == pass_ and r.times]
        ax.barh([r.impl for r in timed], [r.median * 1e3 for r in timed],
                color=["tab:gray" if r.impl == timing.TORCH else "tab:blue" for r in timed])
        ax.invert_yaxis()
        ax.set_title(f"{case.name} {pass_}", fontsize=9)
        ax.set_xlabel("median ms (shorter is faster)", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_bench(parser, args) -> int:
    cases_, impls = _selection(parser, args)
    passes = list(timing.PASSES) if args.passes == "both" else [args.passes]
    dtype = np.dtype(args.dtype)
    have_torch = timing.TORCH in impls
    with timing.pinned_threads(args.threads):
        peak = timing.matmul_peak(dtype)
        threads, rounds = timing.plural(args.threads, "thread"), timing.plural(args.repeat, "interleaved round")
        _print(f"fastconv {__version__} · {dtype} · {threads} for BLAS, numba and torch alike · median of "
               f"{rounds} · matmul peak {peak:.1f} GFLOP/s (best 2048x2048 {dtype} np.matmul)")
        if timing.torch_module() is None:
            _print("No baseline: torch is not installed, so the 'x torch' column is empty and results "
                   "are checked against the reference backend on small shapes only "
                   "(pip install torch to compare).")
        elif not have_torch:
            _print("No baseline: torch was not selected, so the 'x torch' column is empty "
                   "(results are still checked against torch).")
        skipped = sorted({timing.skip_reason(i, c) for i in impls for c in cases_} - {None})
        for reason in skipped:
            _print(f"Not timed on every shape: {reason} (it is slow on purpose).")
        total = timing.steps(cases_, impls, passes, args.repeat)
        with _Progress(total, enabled=not args.no_progress) as progress:
            results = timing.measure(cases_, impls, passes, dtype=dtype, repeat=args.repeat,
                                     on_step=progress.step)
    rows = bench_report(results, cases_, passes, peak, dtype)
    if have_torch and len(cases_) > 1:
        _geomean_summary(results, passes)
    if args.json:
        fields = ("name", "n", "c_in", "ih", "iw", "c_out", "k", "stride", "pad", "groups", "dilation",
                  "macs")
        doc = {"fastconv": __version__, "dtype": str(dtype), "threads": args.threads, "repeat": args.repeat,
               "matmul_peak_gflops": peak, "torch": _version("torch"), "numpy": np.__version__,
               "cases": [{k: getattr(c, k) for k in fields} for c in cases_], "results": rows}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, allow_nan=True)
        _print(f"wrote {args.json}")
    if args.plot:
        _plot(args.plot, results, cases_, passes)
        _print(f"wrote {args.plot}")
    wrong = [r for r in results if not r.ok]
    for r in wrong:
        _print(f"WRONG RESULT: {r.impl} {r.pass_} on {r.case}: error {r.error:.2e}")
    return 1 if wrong else 0


def cmd_check(parser, args) -> int:
    cases_, impls = _selection(parser, args, with_torch=False)
    impls = [i for i in impls if i != timing.TORCH]
    dtype = np.dtype(args.dtype)
    torch = timing.torch_module()
    oracle = "torch" if torch else "the reference backend"
    if torch is None:
        _print("torch is not installed: comparing with the reference backend (slow on large shapes).")
    tol = timing.TOLERANCE[dtype]
    rows, failed = [], 0
    for case in cases_:
        problem = timing.Problem(case, dtype)
        for pass_ in timing.PASSES:
            for impl in impls:
                if impl == "reference" and torch is None:
                    continue  # it is the oracle
                if timing.skip_reason(impl, case):
                    rows.append([case.name, pass_, impl, "-", "skipped (slow on purpose)"])
                    continue
                err = problem.error(problem.runner(impl, pass_)(), pass_, slow_ok=True)
                ok = err is not None and err <= tol
                failed += not ok
                rows.append([case.name, pass_, impl, "-" if err is None else f"{err:.1e}",
                             "pass" if ok else "FAIL"])
    print_table(f"largest |error| / max|expected| vs {oracle}, {dtype} (tolerance {tol:.0e})",
                ["shape", "pass", "backend", "max error", "result"], rows, right_from=3)
    _print(f"{failed} failed" if failed else "all passed")
    return 1 if failed else 0


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cmd_info(parser, args) -> int:
    from threadpoolctl import threadpool_info

    rows = [["fastconv", __version__], ["python", platform.python_version()], ["numpy", np.__version__]]
    for pool in threadpool_info():
        library = os.path.basename(pool["filepath"])
        rows.append([f"{pool['user_api']} ({pool['internal_api']})",
                     f"{pool['version']} · {pool['num_threads']} threads · {library}"])
    numba_line = _version("numba")
    if numba_line and "numba" in backends.available():
        import numba

        try:
            backends.get("numba").warmup(np.dtype(np.float32))  # the threading layer exists once a kernel ran
            layer = numba.threading_layer()
        except (ValueError, RuntimeError):
            layer = f"not started (configured: {numba.config.THREADING_LAYER})"
        numba_line += f" · threading layer {layer} · {numba.get_num_threads()} threads"
    rows.append(["numba", numba_line or "not installed"])
    torch = timing.torch_module()
    rows.append(["torch", f"{torch.__version__} · {torch.get_num_threads()} threads" if torch
                 else "not installed"])
    rows.append(["cpu", f"{_cpu()} · {os.cpu_count()} CPUs, {timing.default_threads()} usable"])
    missing = [name for name in backends.NAMES if name not in backends.available()]
    rows.append(["backends", ", ".join(backends.available())
                 + (f" (not installed: {', '.join(missing)})" if missing else "")])
    print_table("fastconv info", ["", ""], rows)
    picks = [[c.name, _describe(c), choose_backend(c.x_shape, c.w_shape, **c.kwargs)]
             for c in cases.SUITES[args.suite]]
    print_table(f'backend="auto" on the {args.suite} suite (float32)', ["shape", "geometry", "auto"], picks,
                right_from=3)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastconv`` console script and of ``python -m fastconv``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command = {"bench": cmd_bench, "check": cmd_check, "info": cmd_info}.get(args.command)
    if command is None:
        from . import _gate

        return _gate.cmd_gate(parser, args)
    return command(parser, args)


if __name__ == "__main__":
    sys.exit(main())
