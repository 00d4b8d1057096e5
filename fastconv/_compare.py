"""``fastconv compare A.json B.json``: is B faster than A?

For each shape, pass and implementation present in both runs, the ratio of B's median time to A's,
with a bootstrap confidence interval from the raw samples of both (``scipy.stats.bootstrap``,
percentile method, the two runs resampled independently: they are separate processes) and a
verdict: ``faster`` when the whole interval is below 1, ``slower`` when it is above 1, ``within
noise`` otherwise. ``--fail-above 1.10`` turns it into a CI check: exit 1 when an entry is
``slower`` and its ratio is above 1.10, that is, a slowdown of more than 10 % that the spread of
the samples does not explain. Two runs are comparable only on the same machine and settings;
differences in the recorded environment are listed above the table.

The interval covers the noise *within* each run. Between two runs a shared machine can change
(a neighbour's job, the CPU's clock), which moves every implementation, torch included:
``--relative-to torch`` compares each round's time divided by torch's time in the same round,
so that such a change cancels, as the gate does.
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np

from . import _results
from ._args import number
from ._console import num, print_table, say

HELP = "compare two saved runs (bench --json): B/A time per shape, pass and backend, with a verdict"
DESCRIPTION = __doc__.split("\n\n", 1)[1].replace("``", "")
N_RESAMPLES = 4999


def add_flags(p) -> None:
    p.add_argument("baseline", metavar="A.json", help="the run before (fastconv bench --json)")
    p.add_argument("candidate", metavar="B.json", help="the run after")
    p.add_argument("--fail-above", type=number(0, inclusive=False, example="1.10"), metavar="RATIO",
                   help="exit 1 when an entry is significantly slower and B/A exceeds RATIO (e.g. 1.10)")
    p.add_argument("--confidence", type=_confidence, default=0.95, help="of the intervals (default: 0.95)")
    p.add_argument("--impl", action="append", default=[], metavar="NAME",
                   help="only these implementations (a backend, torch, or an --impl name); repeatable")
    p.add_argument("--relative-to", metavar="NAME",
                   help="compare each implementation's time divided by NAME's (e.g. torch) in the same round, "
                   "instead of its time: what changed in the machine between the runs cancels out")


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a level between 0 and 1 such as 0.95; got {text!r}")
    return value


def ratio_interval(a, b, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(median(b) / median(a), low, high)``: the ratio with its bootstrap confidence interval;
    NaN bounds with fewer than two samples on a side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ratio = float(np.median(b) / np.median(a))
    if len(a) < 2 or len(b) < 2:
        return ratio, math.nan, math.nan
    from scipy.stats import bootstrap

    def statistic(x, y, axis):
        return np.median(y, axis=axis) / np.median(x, axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # identical samples make a degenerate (zero-width) interval
        res = bootstrap((a, b), statistic, vectorized=True, paired=False, confidence_level=confidence,
                        n_resamples=N_RESAMPLES, method="percentile", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # all resamples equal
        low = high = ratio
    return ratio, low, high


def verdict(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "too few rounds"
    if high < 1:
        return "faster"
    if low > 1:
        return "slower"
    return "within noise"


def _environment_differences(a: dict, b: dict) -> list[str]:
    """What differs between the runs' settings, machines and versions (commits are expected to)."""
    out = []
    for section, keys in (("settings", ("dtype", "threads", "repeat", "precision")),):
        for key in keys:
            if a[section].get(key) != b[section].get(key):
                out.append(f"{key}: {a[section].get(key)} -> {b[section].get(key)}")
    for key in ("cpu", "cpus", "usable_cpus", "node"):
        va, vb = a["environment"]["machine"].get(key), b["environment"]["machine"].get(key)
        if va != vb:
            out.append(f"machine {key}: {va} -> {vb}")
    for name, va in a["environment"]["versions"].items():
        vb = b["environment"]["versions"].get(name)
        if va != vb:
            out.append(f"{name}: {va} -> {vb}")
    return out


def _commit(doc: dict) -> str:
    git = doc["environment"]["git"]
    info = git.get("cwd") or git.get("fastconv")
    if not info:
        return "no git commit"
    return info["commit"][:10] + (" (with uncommitted changes)" if info["dirty"] else "")


def _samples(doc: dict, impls, relative_to: str | None = None) -> dict[tuple[str, str, str], np.ndarray]:
    """``(case, pass, impl) -> samples``: the times of the rounds, or with ``relative_to`` each
    round's time divided by that implementation's time in the same round (rounds pair up by
    index, as in :func:`fastconv._timing.per_round`)."""
    times = {(r["case"], r["pass"], r["impl"]): np.asarray(r["times"], float) for r in doc["results"] if r["times"]}
    out = {}
    for (case, pass_, impl), t in times.items():
        if impls and impl not in impls:
            continue
        if relative_to is None:
            out[case, pass_, impl] = t
        elif impl != relative_to and (case, pass_, relative_to) in times:
            out[case, pass_, impl] = t / times[case, pass_, relative_to]
    return out


def cmd_compare(parser, args) -> int:
    try:
        a, b = _results.read(args.baseline), _results.read(args.candidate)
    except ValueError as exc:
        parser.error(str(exc))
    say(f"A: {args.baseline} · {a['environment']['created']} · {_commit(a)}")
    say(f"B: {args.candidate} · {b['environment']['created']} · {_commit(b)}")
    for line in _environment_differences(a, b):
        say(f"differs: {line}")
    sa, sb = _samples(a, args.impl, args.relative_to), _samples(b, args.impl, args.relative_to)
    common = [k for k in sa if k in sb]
    if not common:
        parser.error("the two runs have no shape, pass and implementation in common"
                     + (f" among --impl {', '.join(args.impl)}" if args.impl else "")
                     + (f" timed beside {args.relative_to}" if args.relative_to else ""))
    rows, failed, by_impl = [], [], {}
    level = f"{args.confidence:.0%}"
    for key in common:
        ratio, low, high = ratio_interval(sa[key], sb[key], args.confidence)
        status = verdict(low, high)
        fails = args.fail_above is not None and status == "slower" and ratio > args.fail_above
        if fails:
            failed.append((key, ratio, low, high))
        by_impl.setdefault((key[2], key[1]), []).append(ratio)
        scale, digits = (1, 2) if args.relative_to else (1e3, 3)
        rows.append([*key, num(np.median(sa[key]) * scale, digits), num(np.median(sb[key]) * scale, digits),
                     num(ratio, 3), f"{num(low, 3)}-{num(high, 3)}", status + (" FAIL" if fails else "")])
    what, unit = (f"time / {args.relative_to}'s (same round)", "") if args.relative_to else ("median time", " ms")
    print_table(f"B / A {what}, {level} bootstrap interval", ["shape", "pass", "backend", f"A{unit}", f"B{unit}",
                "B/A", f"{level} interval", "verdict"], rows, right_from=3)
    summary = [[impl, pass_, str(len(r)), num(math.exp(np.mean(np.log(r))), 3), num(min(r), 3), num(max(r), 3)]
               for (impl, pass_), r in by_impl.items()]
    print_table("B / A over the shapes", ["backend", "pass", "shapes", "geomean", "best", "worst"], summary,
                right_from=2)
    only = sorted(set(sa) ^ set(sb))
    if only:
        say(f"in one run only (not compared): {', '.join(' '.join(k) for k in only)}")
    counts = {v: sum(r[-1].startswith(v) for r in rows) for v in ("faster", "slower", "within noise")}
    say(", ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(rows)} entries")
    if args.fail_above is not None:
        for (case, pass_, impl), ratio, low, high in failed:
            say(f"FAIL {impl} {pass_} on {case}: {ratio:.3f}x A's time ({level} interval {low:.3f}-{high:.3f}), "
                f"above --fail-above {args.fail_above}")
        say(f"compare FAILED: {len(failed)} entries slower than {args.fail_above}x" if failed
            else f"compare passed: no entry significantly slower than {args.fail_above}x")
    return 1 if failed else 0
