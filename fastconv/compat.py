"""Drop-in replacements for the two functions of the tutorial fastconv grew from.

Same argument order, shapes and return values as the tutorial's ``conv2d_forward`` and
``conv2d_backward`` (an ``(H, W, C)`` image, ``(C', F, F, C)`` kernels, a required bias), so code
and tests written against the tutorial run unchanged after ``from fastconv.compat import ...``.
"""

from __future__ import annotations

import numpy as np

from .api import conv2d
from .api import conv2d_backward as _conv2d_backward


def conv2d_forward(input: np.ndarray, weight: np.ndarray, bias: np.ndarray, stride: int,
                   padding: int) -> dict[str, np.ndarray]:
    """Convolution of one ``(H, W, C)`` image, returning the tutorial's cache dict.

    Parameters
    ----------
    input : ndarray
        ``(H, W, C)``.
    weight : ndarray
        ``(C', F, F, C)``.
    bias : ndarray
        ``(C',)``; required, as in the tutorial.
    stride : int or pair of ints
    padding : int, or any padding :func:`fastconv.conv2d` accepts
        Zeros added on each side.

    Returns
    -------
    dict
        ``"Z"``: the output ``(H', W', C')``; ``"W"``, ``"b"``, ``"A_prev"``: the weight, bias and
        input, kept for :func:`conv2d_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.compat import conv2d_forward
    >>> cache = conv2d_forward(np.ones((4, 4, 1)), np.ones((2, 3, 3, 1)), np.zeros(2), 1, 1)
    >>> cache["Z"][:, :, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]])
    """
    if bias is None:
        raise TypeError("conv2d_forward: `bias` is required, as in the tutorial; pass np.zeros(C') for none")
    z = conv2d(input, weight, bias, stride, padding, layout="NHWC")
    return {"Z": z, "W": weight, "b": bias, "A_prev": input}


def conv2d_backward(dZ: np.ndarray, cache: dict[str, np.ndarray], stride: int,
                    padding: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dW, db, dA_prev)`` of the convolution recorded in ``cache``, given ``dZ``.

    Parameters
    ----------
    dZ : ndarray
        Gradient of the loss with respect to ``cache["Z"]``: ``(H', W', C')``.
    cache : dict
        As returned by :func:`conv2d_forward`.
    stride, padding
        As given to :func:`conv2d_forward`.

    Returns
    -------
    tuple of ndarray
        ``(dW, db, dA_prev)``, shaped like the weight ``(C', F, F, C)``, the bias ``(C',)`` and the
        input ``(H, W, C)``, in the tutorial's order.

    Examples
    --------
    >>> import numpy as np
    >>> from fastconv.compat import conv2d_forward, conv2d_backward
    >>> cache = conv2d_forward(np.ones((3, 3, 1)), np.ones((1, 2, 2, 1)), np.zeros(1), 1, 0)
    >>> dW, db, dA_prev = conv2d_backward(np.ones((2, 2, 1)), cache, 1, 0)
    >>> dA_prev[:, :, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> db
    array([4.])
    """
    g = _conv2d_backward(dZ, cache["A_prev"], cache["W"], stride, padding, bias=True, layout="NHWC")
    return g.weight, g.bias, g.input
