"""Your own implementation beside fastconv's backends: ``--impl mypkg.module:function``.

An implementation is any callable with the signature of :func:`fastconv.conv2d` (or ``conv1d`` /
``conv3d`` for those shapes)::

    def my_conv(x, w, b=None, stride=1, padding=0, dilation=1, groups=1) -> y

``stride`` and ``dilation`` arrive as one int per axis and ``padding`` as one int per axis, or
one ``(before, after)`` pair per axis where the two sides differ. Its backward pass is optional,
with the signature of :func:`fastconv.conv2d_backward` (``bias=True``), returning
``(grad_input, grad_weight, grad_bias)``. Where it comes from:

- ``--impl-backward mypkg.module:function``, given after the ``--impl`` it belongs to;
- otherwise ``function_backward`` beside ``function`` in the same module, when there is one;
- ``--impl mypkg.module`` (no function) takes the module's ``conv1d``/``conv2d``/``conv3d`` and
  their ``_backward``, the one matching each case's number of axes.

Without a backward, the backward pass is reported as not timed. A full backend (``supports``,
``forward``, ``grad_input``, ``grad_weight``, ``warmup``) that ``auto`` and the tests also see is
registered instead through the ``fastconv.backends`` entry point group (see the README).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Plugin:
    """A user's implementation: its name in tables and JSON is the ``--impl`` text."""

    name: str
    module: object
    function: str | None  # None: the module's conv1d/conv2d/conv3d by the case's axes
    backward_spec: str | None = None

    def forward(self, fn_name: str) -> Callable | None:
        """The forward callable for a case whose public function is ``fn_name`` (``"conv2d"``...)."""
        return getattr(self.module, self.function or fn_name, None)

    def backward(self, fn_name: str) -> Callable | None:
        """The backward callable, or None when there is none."""
        if self.backward_spec:
            return _resolve(self.backward_spec, "--impl-backward")
        return getattr(self.module, f"{self.function or fn_name}_backward", None)


def _import(module_name: str, flag: str):
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{flag}: cannot import {module_name!r}: {exc}") from None


def _resolve(spec: str, flag: str) -> Callable:
    module_name, _, function = spec.partition(":")
    target = getattr(_import(module_name, flag), function, None)
    if not callable(target):
        raise ValueError(f"{flag}: {module_name!r} has no callable {function!r}")
    return target


def load(spec: str, backward_spec: str | None = None) -> Plugin:
    """``"pkg.module:function"`` or ``"pkg.module"`` -> a :class:`Plugin`; ``ValueError`` saying
    what could not be found (the CLI turns it into a usage error before any timing)."""
    spec = spec.strip()
    module_name, sep, function = spec.partition(":")
    if not module_name or (sep and not function):
        raise ValueError(f"--impl: expected 'package.module:function' or 'package.module'; got {spec!r}")
    module = _import(module_name, "--impl")
    if function:
        if not callable(getattr(module, function, None)):
            raise ValueError(f"--impl: {module_name!r} has no callable {function!r}")
    elif not any(callable(getattr(module, f, None)) for f in ("conv1d", "conv2d", "conv3d")):
        raise ValueError(f"--impl: module {module_name!r} has no conv1d, conv2d or conv3d; "
                         "name the function: --impl package.module:function")
    if backward_spec:
        if ":" not in backward_spec:
            raise ValueError(f"--impl-backward: expected 'package.module:function'; got {backward_spec!r}")
        _resolve(backward_spec, "--impl-backward")
    return Plugin(spec, module, function or None, backward_spec)


def load_all(specs, backward_specs=()) -> list[Plugin]:
    """Plugins for ``specs``; ``backward_specs[i]`` (if given) is the backward of ``specs[i]``."""
    backward_specs = list(backward_specs or ())
    if len(backward_specs) > len(specs):
        raise ValueError("--impl-backward: each one belongs to an --impl given before it")
    backward_specs += [None] * (len(specs) - len(backward_specs))
    plugins = [load(s, b) for s, b in zip(specs, backward_specs)]
    names = [p.name for p in plugins]
    if len(set(names)) != len(names):
        raise ValueError(f"--impl: the same implementation given twice: {names}")
    return plugins
