"""What a budgets file (``fastconv gate``) may contain, as a JSON Schema checked before anything runs.

A file that breaks it is a usage error (exit 2, one line per problem naming the key), never a
slowdown (exit 1) or a traceback. Numbers are finite (NaN or infinity would switch a comparison
off: ``ratio > nan`` is never true), budgets are above zero and the tolerance at least 1. What a
schema cannot say (a budget for a shape that the file does not define, a shape string that does
not parse) is checked next, by :func:`check_references`, with messages of the same form.
"""

from __future__ import annotations

import math
import re

from . import _precision, backends, cases
from . import _timing as timing


class BudgetsError(ValueError):
    """A budgets file that cannot be used; the message names the file and every bad key."""


_NUMBER = {"type": "number"}
_BUDGET = {"type": "number", "exclusiveMinimum": 0,
           "description": "a backend's time divided by torch's time in the same run"}
_PASS_TABLE = {"type": "object", "description": "implementation -> {shape -> budget}",
               "additionalProperties": {"type": "object", "additionalProperties": _BUDGET}}
# A module path with an optional ":function".
IMPL_PATTERN = r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*(:[A-Za-z_][\w]*)?$"


def schema() -> dict:
    """The JSON Schema (draft 2020-12) of a budgets file, built from the registry and the suites
    so that its choices stay current."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fastconv gate budgets",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "tolerance": {**_NUMBER, "minimum": 1, "description": "fail above budget x tolerance"},
            "suite": {"enum": list(cases.SUITES), "description": "a built-in suite; leave it out to use [shapes] only"},
            "threads": {"type": "integer", "minimum": 1},
            "dtype": {"enum": ["float32", "float64"]},
            "repeat": {"type": "integer", "minimum": 1},
            "stat": {"enum": list(timing.STATS)},
            "precision": {"enum": list(_precision.PRECISIONS)},
            "backends": {"type": "array", "items": {"type": "string"}, "uniqueItems": True,
                         "description": "which registered backends to time (default: every installed one)"},
            "impls": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": IMPL_PATTERN},
                      "description": "your own implementations, as for `fastconv bench --impl`"},
            "shapes": {"type": "object", "additionalProperties": {"type": "string"},
                       "description": "name -> shape in the --shape grammar"},
            "forward": _PASS_TABLE,
            "backward": _PASS_TABLE,
            "machine": {"type": "string", "minLength": 1,
                        "description": "the machine kind the top-level budgets were measured on"},
            "machines": {"type": "object", "description": "machine kind -> its own budgets",
                         "additionalProperties": {"type": "object", "additionalProperties": False,
                                                  "properties": {"forward": _PASS_TABLE, "backward": _PASS_TABLE}}},
        },
    }


def _validator():
    from jsonschema import Draft202012Validator, validators

    # JSON has no NaN or infinity, so JSON Schema never rules them out; TOML has both. A number
    # here is finite, so `tolerance = nan` fails the type check, naming the key.
    def finite_number(checker, instance) -> bool:
        return Draft202012Validator.TYPE_CHECKER.is_type(instance, "number") and math.isfinite(instance)
    type_checker = Draft202012Validator.TYPE_CHECKER.redefine("number", finite_number)
    return validators.extend(Draft202012Validator, type_checker=type_checker)(schema())


def key_path(parts) -> str:
    """``["forward", "im2col", "q-r28"]`` -> ``forward.im2col."q-r28"`` (TOML's dotted-key form)."""
    return ".".join(str(p) if re.fullmatch(r"[A-Za-z0-9_]+", str(p)) else f'"{p}"' for p in parts) or "(top level)"


def validate(doc: dict, path) -> None:
    """``BudgetsError`` listing every key of ``doc`` (read from ``path``) that breaks the schema."""
    try:
        validator = _validator()
    except ImportError:
        raise BudgetsError("checking a budgets file needs jsonschema: pip install 'fastconv[cli]'") from None
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"{key_path(e.absolute_path)}: {_message(e)}" for e in errors]
        raise BudgetsError(f"{path}: " + "; ".join(lines))


def _message(error) -> str:
    if error.validator == "type" and error.validator_value == "number" and isinstance(error.instance, float):
        return f"{error.instance!r} is not a finite number"
    return error.message


def check_references(doc: dict, path, case_names, impl_names) -> None:
    """``BudgetsError`` for budgets naming a shape or implementation the file does not define."""
    problems = []
    for where, tables in [((), doc), *((("machines", kind), t) for kind, t in doc.get("machines", {}).items())]:
        for pass_ in timing.PASSES:
            for impl, by_case in tables.get(pass_, {}).items():
                if impl not in impl_names:
                    problems.append(f"{key_path([*where, pass_, impl])}: unknown implementation {impl!r}; budgets "
                                    f"are for {', '.join(impl_names)}")
                    continue
                for case in by_case:
                    if case not in case_names:
                        problems.append(f"{key_path([*where, pass_, impl, case])}: no shape {case!r} in the suite "
                                        "or [shapes]")
    if problems:
        raise BudgetsError(f"{path}: " + "; ".join(problems))


def known_impls(doc: dict) -> list[str]:
    """Names a budget may be for: every registered backend and the file's own implementations."""
    return [*backends.NAMES, *doc.get("impls", [])]
