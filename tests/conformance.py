"""Loading the ONNX node test cases of ../shared/conformance (inputs, expected output, attributes)."""

import os
from pathlib import Path

import numpy as np
import pytest


def conformance_dir() -> Path | None:
    """``shared/conformance/onnx_node`` beside the repository (or ``$FASTCONV_SHARED``), if present."""
    roots = [os.environ.get("FASTCONV_SHARED"), Path(__file__).resolve().parents[2] / "shared"]
    for root in filter(None, roots):
        path = Path(root) / "conformance" / "onnx_node"
        if path.is_dir():
            return path
    return None


def onnx_cases(op_type: str) -> list:
    """``pytest.param((inputs, expected, attrs), id=case)`` for every case of the given operator."""
    base = conformance_dir()
    if base is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason="shared/conformance not found"))]
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    params = []
    for case in sorted(p for p in base.iterdir() if (p / "model.onnx").is_file()):
        node = onnx.load(str(case / "model.onnx")).graph.node[0]
        if node.op_type != op_type:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        data = case / "test_data_set_0"
        load = lambda p: numpy_helper.to_array(onnx.load_tensor(str(p)))  # noqa: E731
        inputs = [load(p) for p in sorted(data.glob("input_*.pb"))]
        params.append(pytest.param((inputs, load(data / "output_0.pb"), attrs), id=case.name))
    assert params, f"no {op_type} cases in {base}"
    return params


def onnx_pads(attrs, in_hw, k_hw, strides, dilations):
    """ONNX ``pads``/``auto_pad`` -> per-side ``((top, bottom), (left, right))``, SAME_LOWER included."""
    auto = attrs.get("auto_pad", b"NOTSET").decode()
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        sides = []
        for size, k, s, d in zip(in_hw, k_hw, strides, dilations):
            total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            small, big = total // 2, total - total // 2
            sides.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return tuple(sides)
    if auto == "VALID":
        return ((0, 0), (0, 0))
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    return ((top, bottom), (left, right))


def as_float(a):
    return np.asarray(a, dtype=np.float32)
