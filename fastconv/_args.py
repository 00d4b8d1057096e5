"""Argument types and flags that several ``fastconv`` subcommands share (``cli``, ``_gate``,
``_compare`` import them from here, so that no subcommand module imports another)."""

from __future__ import annotations

import argparse
import math

from . import _plugins, backends, cases
from . import _timing as timing


def impl_names() -> tuple[str, ...]:
    """Every name ``--backends`` accepts: the registered backends, auto and torch."""
    return (*backends.NAMES, timing.AUTO, timing.TORCH)


# Each error names the flag's field and lists the choices.

def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int; got {text!r}")
    return value


def number(minimum: float, *, inclusive: bool, example: str):
    """An argparse type: a finite float above ``minimum`` (or equal, when ``inclusive``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and (value >= minimum if inclusive else value > minimum)):
            bound = f"{'at least' if inclusive else 'above'} {minimum:g}"
            raise argparse.ArgumentTypeError(f"expected a finite number {bound} such as {example}; got {text!r}")
        return value
    return parse


def shape(text: str) -> cases.Case:
    try:
        return cases.parse_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def impl_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in impl_names():
            raise argparse.ArgumentTypeError(f"unknown backend {name!r}; choose from {', '.join(impl_names())} "
                                             "(your own function: --impl package.module:function)")
    return names


def add_impl_flags(p: argparse.ArgumentParser) -> None:
    """``--impl`` and ``--impl-backward``: a user's implementation timed beside the backends."""
    p.add_argument("--impl", action="append", default=[], metavar="PKG.MODULE[:FUNCTION]",
                   help="also time your own function with conv2d's signature (or a module's conv1d/2d/3d); "
                   "repeatable")
    p.add_argument("--impl-backward", action="append", default=[], metavar="PKG.MODULE:FUNCTION",
                   help="the backward of the --impl at the same position, with conv2d_backward's signature "
                   "(default: FUNCTION_backward beside FUNCTION, if any)")


def load_plugins(parser, args) -> list[_plugins.Plugin]:
    try:
        return _plugins.load_all(args.impl, args.impl_backward)
    except ValueError as exc:
        parser.error(str(exc))


