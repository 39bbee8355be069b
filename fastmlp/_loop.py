"""The one training loop under every front door (``Trainer``, the estimators).

A step is: a batch, the gradient (or one fused SGD pass), a finite check of
the loss computed *before* the update, then the update. The loss of a step
that is NaN or infinite is returned without any update applied; the caller
turns it into a :class:`DivergenceError` with its own wording.
"""
import math


class DivergenceError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite.

    The update of the failing step was not applied: the network's parameters
    (and the optimizer's state) are those of the last good step.

    Attributes
    ----------
    step : int
        1-based number of the step whose loss was not finite
        (``trainer.current_iter + 1``).
    epoch : int
        1-based epoch that step belongs to.
    loss : float
        The non-finite loss.
    """

    def __init__(self, message, step, epoch, loss):
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.loss = loss


def step(network, optimizer, x, t, sample_weight=None, weight_decay=None, gradient_hook=None):
    """One training step; returns the loss before the update (no update when it is not finite).

    Fused (forward, backward and ``p -= lr * g`` in one compiled pass, no
    gradient stored) when the optimizer is plain SGD (``optimizer.fused_lr()``
    gives its rate), the network offers ``fused_sgd_step`` and accepts, and no
    ``gradient_hook`` must see the gradients. Otherwise
    ``network.gradient``, the finite check, ``gradient_hook(grads)`` (e.g. an
    all-reduce over data-parallel workers), ``optimizer.update``.
    """
    if gradient_hook is None:
        fused_lr = getattr(optimizer, "fused_lr", None)
        lr = fused_lr() if fused_lr is not None else None
        fused_step = getattr(network, "fused_sgd_step", None) if lr is not None else None
        if fused_step is not None:
            loss = fused_step(x, t, lr, sample_weight, weight_decay)
            if loss is not None:
                return loss
    grads = network.gradient(x, t, sample_weight, weight_decay=weight_decay)
    loss = network.last_loss
    if math.isfinite(loss):
        if gradient_hook is not None:
            gradient_hook(grads)
        optimizer.update(network.params, grads)
    return loss
