"""The logistic and Poisson output layers in pure numpy: the oracle for ``fastmlp.layers``.

Kept beside ``fastmlp.reference.layers`` (which re-exports them), with the same
conventions. Each takes the logits ``x`` and float targets ``t`` of the same shape (N, K):
the loss is the per-element loss below summed over the units and averaged over the rows,
and ``backward`` gives ``(y - t) * dout / N`` with ``y`` the output (the canonical link).
:func:`logistic_loss` and :func:`poisson_loss` are the per-element losses, for tests that
weight rows.
"""
import numpy as np

from fastmlp._validation import as_float, check_called, check_same_shape, check_target_range, check_x
from fastmlp.reference.functions import sigmoid

__all__ = ["SigmoidWithLoss", "PoissonLoss", "logistic_loss", "poisson_loss"]


def logistic_loss(x, t):
    """Binary cross-entropy of ``sigmoid(x)`` against ``t``, elementwise, from the logits:
    ``max(x, 0) - t * x + log1p(exp(-|x|))`` (exact and finite for any ``x``)."""
    return np.maximum(x, 0) - t * x + np.log1p(np.exp(-np.abs(x)))


def poisson_loss(x, t):
    """Half the Poisson deviance of ``exp(x)`` against ``t >= 0``, elementwise:
    ``t * log(t) - t * x - t + exp(x)``, with ``t * log(t) = 0`` at ``t = 0`` (scikit-learn's
    ``xlogy(t, t / exp(x)) - t + exp(x)``)."""
    t_log_t = np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0)
    return t_log_t - t * x - t + np.exp(x)


class _LinkLoss:
    _loss_name: str | None = None   # the subclass's output code name

    def __init__(self):
        self.loss = None
        self.y = None
        self.t = None

    def forward(self, x, t):
        """Return the mean over rows of the loss summed over units.

        Parameters
        ----------
        x : array_like, shape (N, K)
            Logits.
        t : array_like, shape (N, K)
            Targets.

        Returns
        -------
        float
        """
        x = check_x(x)
        t = check_target_range(as_float(t, "t", dtype=x.dtype, finite=True), self._loss_name)
        check_same_shape(x, t, "x", "t")
        if self._loss_name == "logistic":
            self.y, per_element = sigmoid(x), logistic_loss(x, t)
        else:
            self.y, per_element = np.exp(x), poisson_loss(x, t)
        self.t = t
        self.loss = float(np.sum(per_element) / x.shape[0])
        return self.loss

    def backward(self, dout=1):
        """Return ``dout * (y - t) / N``."""
        check_called(self.y, type(self).__name__)
        return (self.y - self.t) * (float(dout) / self.y.shape[0])


class SigmoidWithLoss(_LinkLoss):
    """Sigmoid outputs with binary cross-entropy per unit (binary and multilabel
    classification); ``t`` in [0, 1]."""

    _loss_name = "logistic"


class PoissonLoss(_LinkLoss):
    """Exp outputs with half the Poisson deviance (scikit-learn's
    ``MLPRegressor(loss='poisson')``); ``t >= 0``."""

    _loss_name = "poisson"
