"""Train a small CNN on scikit-learn's 8x8 digits with fastconv.Conv2d and plain NumPy.

    python examples/train_digits.py [--epochs 8] [--backend auto]

Conv2d(1 -> 16, 3x3, padding 1) -> ReLU -> 2x2 max pooling -> linear (256 -> 10) -> softmax
cross-entropy, trained with SGD and momentum. Every gradient is written out by hand: the
convolution's comes from ``Conv2d.backward``, the rest from the few lines below, so a test
accuracy above 95 % shows the convolution's gradients work in practice, not only in tests.
The data ship inside scikit-learn (``pip install 'fastconv[examples]'``); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastconv


def load_digits(seed: int = 0, test_fraction: float = 0.25):
    """``(x_train, y_train, x_test, y_test)``: images ``(N, 1, 8, 8)`` float32 in [0, 1], labels int."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = (data.images / 16.0).astype(np.float32)[:, np.newaxis]
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], data.target[train], x[test], data.target[test]


class DigitsCNN:
    """conv -> ReLU -> 2x2 max pool -> linear, with a hand-written backward pass."""

    def __init__(self, channels: int = 16, seed: int = 0, backend: str = "auto"):
        rng = np.random.default_rng(seed)
        self.conv = fastconv.Conv2d(1, channels, 3, padding=1, seed=rng, backend=backend)
        n_features = channels * 4 * 4
        bound = 1 / np.sqrt(n_features)  # torch.nn.Linear's initialisation
        self.fc_w = rng.uniform(-bound, bound, (10, n_features)).astype(np.float32)
        self.fc_b = rng.uniform(-bound, bound, 10).astype(np.float32)

    def parameters(self) -> list[np.ndarray]:
        return [self.conv.weight, self.conv.bias, self.fc_w, self.fc_b]

    def gradients(self) -> list[np.ndarray]:
        """Of the last :meth:`backward`, in the order of :meth:`parameters`."""
        return [self.conv.grad_weight, self.conv.grad_bias, self.grad_fc_w, self.grad_fc_b]

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = self.conv(x)
        a = np.maximum(z, 0)
        n, c, h, w = a.shape
        # Each 2x2 window as the last axis; argmax (not a == max) so ties send the gradient once.
        windows = (a.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5)
                   .reshape(n, c, h // 2, w // 2, 4))
        self._pool_idx = windows.argmax(axis=-1)[..., np.newaxis]
        pooled = np.take_along_axis(windows, self._pool_idx, axis=-1)[..., 0]
        self._relu_mask, self._flat = z > 0, pooled.reshape(n, -1)
        return self._flat @ self.fc_w.T + self.fc_b

    def backward(self, g_logits: np.ndarray) -> None:
        self.grad_fc_w = g_logits.T @ self._flat
        self.grad_fc_b = g_logits.sum(axis=0)
        n, c, h, w = self._relu_mask.shape
        g_pooled = (g_logits @ self.fc_w).reshape(n, c, h // 2, w // 2, 1)
        g_windows = np.zeros((n, c, h // 2, w // 2, 4), dtype=g_logits.dtype)
        np.put_along_axis(g_windows, self._pool_idx, g_pooled, axis=-1)
        g_a = g_windows.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)
        self.conv.backward(g_a * self._relu_mask)  # the input gradient is not needed: first layer


def cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Mean softmax cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(labels)
    loss = -log_p[np.arange(n), labels].mean()
    grad = np.exp(log_p)
    grad[np.arange(n), labels] -= 1
    return float(loss), (grad / n).astype(logits.dtype)


def accuracy(model: DigitsCNN, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    hits = sum(int((model.forward(x[i:i + batch_size]).argmax(axis=1) == y[i:i + batch_size]).sum())
               for i in range(0, len(x), batch_size))
    return hits / len(x)


def train(epochs: int = 8, batch_size: int = 32, lr: float = 0.05, momentum: float = 0.9, seed: int = 0,
          backend: str = "auto", max_batches: int | None = None, log=print) -> dict:
    """Train :class:`DigitsCNN` with SGD + momentum, the rate decaying linearly; returns the history.

    ``max_batches`` stops after that many batches in all (for quick tests); ``log`` receives one
    line per epoch (None for silence). The history holds every batch's loss and, per epoch, the
    train and test accuracies.
    """
    x_train, y_train, x_test, y_test = load_digits(seed)
    model = DigitsCNN(seed=seed, backend=backend)
    rng = np.random.default_rng(seed + 1)
    velocity = [np.zeros_like(p) for p in model.parameters()]
    history = {"model": model, "loss": [], "train_acc": [], "test_acc": []}
    steps = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(x_train))
        step = lr * (1 - (epoch - 1) / epochs)  # linear decay settles the noisy late epochs
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            loss, g_logits = cross_entropy(model.forward(x_train[batch]), y_train[batch])
            model.backward(g_logits)
            for v, param, grad in zip(velocity, model.parameters(), model.gradients()):
                v *= momentum
                v -= step * grad
                param += v  # in place: the layer reads its own weight and bias arrays
            history["loss"].append(loss)
            steps += 1
            if max_batches is not None and steps >= max_batches:
                return history
        history["train_acc"].append(accuracy(model, x_train, y_train))
        history["test_acc"].append(accuracy(model, x_test, y_test))
        if log:
            n_batches = -(-len(order) // batch_size)
            log(f"epoch {epoch:2d}/{epochs}  loss {np.mean(history['loss'][-n_batches:]):.4f}  "
                f"train {history['train_acc'][-1]:6.2%}  test {history['test_acc'][-1]:6.2%}  "
                f"({time.perf_counter() - start:.2f} s)")
    return history


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto", choices=["auto", *fastconv.backends.NAMES])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    history = train(args.epochs, args.batch_size, args.lr, seed=args.seed, backend=args.backend)
    test_acc = history["test_acc"][-1]
    print(f"test accuracy {test_acc:.2%} in {time.perf_counter() - start:.1f} s "
          f"(backend {history['model'].conv.backend!r})")
    return 0 if test_acc >= 0.95 else 1


if __name__ == "__main__":
    raise SystemExit(main())
