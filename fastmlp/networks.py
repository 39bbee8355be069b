"""The book's networks on compiled kernels: ``MultiLayerNet`` and ``TwoLayerNet``.

The book's logic (construction, parameters, validation, the layer-by-layer
path, ``config``/``from_config``) is written once in ``fastmlp._networks``
over a layers module; here it runs on ``fastmlp.layers``, and ``predict``,
``loss``, ``accuracy`` and ``gradient`` run the whole network in one compiled
call when they can, held by composition: each network owns a
:class:`fastmlp._fused.FusedMLP` and asks it for a plan every call; with none
the method calls the layer path explicitly. The plan exists only while
``layers`` holds exactly the structure the kernel runs (the layer names and
classes it built, no subclass, no layer with its own ``forward``/``backward``,
parameters of one dtype and layout, ``last_layer`` of its class): a layer
replaced, inserted, removed or reordered makes every method run the layers
that are there, one by one, never a different network.

The fused call works in buffers kept for the current batch size, so a
training step allocates no arrays after the first. The layer objects in
``layers`` still see every step: after ``gradient`` their book attributes
(``Affine.x/dW/db``, ``Relu.mask``, ``lastLayer.y/t/loss``) point at the
step's buffers; ``loss`` leaves the forward ones (not ``dW``/``db``) as the
book's layer-by-layer ``loss`` does.

The arrays ``gradient`` returns are those buffers: the next call to
``gradient`` overwrites them (copy them to keep them). One network must not
run ``gradient`` from two threads at once; ``predict`` is safe from many.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _loop, _networks, layers
from ._fused import FusedMLP
from ._typing import FloatArray, ParamDict, Seed, SupportsUpdate
from ._validation import check_positive_float, check_targets

__all__ = ["MultiLayerNet", "TwoLayerNet"]


class MultiLayerNet(_networks.MultiLayerNet):
    __doc__ = _networks.MultiLayerNet.__doc__
    layers_module = layers

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: str | float = "relu",
                 weight_decay_lambda: float = 0, *, dtype: DTypeLike = np.float64,
                 seed: Seed = None, loss: str = "cross_entropy") -> None:
        super().__init__(input_size, hidden_size_list, output_size, activation,
                         weight_init_std, weight_decay_lambda, dtype=dtype, seed=seed, loss=loss)
        self._fused = FusedMLP()   # the compiled whole-network path and its buffers

    def predict(self, x: ArrayLike) -> FloatArray:
        """Scores (logits, before softmax) for a batch.

        Parameters
        ----------
        x : array_like, shape (N, input_size)

        Returns
        -------
        ndarray, shape (N, output_size), of the network's dtype (a new array)
        """
        scores = self._fused.predict_ready(self, x)
        if scores is not None:
            return scores
        x = self._check_x(x, finite=False)
        fused = self._fused.plan(self)
        if fused is None:
            return self._predict(x)
        return self._fused.predict(fused, x)

    def loss(self, x: ArrayLike, t: ArrayLike) -> float:
        """Mean cross-entropy of ``softmax(predict(x))`` (0.5 * squared error for
        ``loss='mse'``, binary cross-entropy per unit for 'logistic', half the Poisson
        deviance for 'poisson') plus the weight-decay term, in one compiled forward pass.

        Parameters
        ----------
        x : array_like, shape (N, input_size), finite
        t : array_like, shape (N,) labels or (N, output_size) one-hot

        Returns
        -------
        float
        """
        fused = self._fused.plan(self)
        if fused is None:
            return super().loss(x, t)
        return self._fused.loss(self, fused, x, t)

    def accuracy(self, x: ArrayLike, t: ArrayLike) -> float:
        """Fraction of samples whose highest score is the true class, in one compiled
        forward pass that counts the hits.

        Parameters
        ----------
        x : array_like, shape (N, input_size)
        t : array_like, shape (N,) labels or (N, output_size) one-hot

        Returns
        -------
        float
        """
        fused = self._fused.plan(self)
        if fused is None or self.loss_name != "cross_entropy":
            return super().accuracy(x, t)
        x = self._check_x(x, finite=False)
        labels, onehot = check_targets(t, x.shape[0], self.output_size, self.dtype)
        if labels is None:
            labels = onehot.argmax(axis=1)
        return float(self._fused.count_correct(fused, x, labels) / x.shape[0])

    def gradient(self, x: ArrayLike, t: ArrayLike, sample_weight: ArrayLike | None = None, *,
                 weight_decay: float | None = None) -> ParamDict:
        """Gradient of ``loss`` by backpropagation, the whole network in one compiled call.

        Parameters
        ----------
        x : array_like, shape (N, input_size), finite
        t : array_like, labels (N,) or one-hot (N, output_size); float
            targets (N, output_size) when ``loss='mse'``
        sample_weight : array_like, shape (N,), optional
            Per-sample weights w: the loss becomes sum(w_i * loss_i) / N.
        weight_decay : float >= 0, optional, keyword-only
            L2 strength of this call only (``weight_decay_lambda`` when None;
            the attribute is not changed).

        Returns
        -------
        dict
            ``W1, b1, ...``: the step's gradient buffers (overwritten by the
            next call). With weight decay ``W{i}`` includes ``lambda * W{i}``.
        """
        fused = self._fused.plan(self)
        if fused is None:
            if sample_weight is not None:
                raise ValueError("sample_weight needs the compiled path (numpy's BLAS was not "
                                 "found, or the parameters or layers are not the fused "
                                 "network's: C-contiguous arrays of the network's dtype)")
            return self._layer_gradient(x, t, weight_decay)
        self._fused.run(self, fused, x, t, sample_weight, weight_decay)
        return self._fused.gradients()

    def fused_sgd_step(self, x: ArrayLike, t: ArrayLike, lr: float,
                       sample_weight: ArrayLike | None = None,
                       weight_decay: float | None = None) -> float | None:
        """Forward, backward and ``p -= lr * grad`` in one compiled pass, if it applies.

        Each W is updated by its own gradient GEMM; no gradient is stored (the
        Affine layers' ``dW`` is None afterwards). Arguments as :meth:`gradient`;
        ``lr`` a finite float > 0.

        Returns
        -------
        float or None
            The loss before the update (the update is applied only when it is
            finite), or None when the fused kernel does not apply to the
            network as it is now (also when ``params`` no longer holds the arrays
            the layers hold): the caller then runs ``gradient`` and its update.
        """
        lr = check_positive_float(lr, "lr")
        fused = self._fused.plan(self, writeable=True)
        if fused is None or not self._params_held(fused):
            return None
        loss = self._fused.run(self, fused, x, t, sample_weight, weight_decay, sgd_lr=lr)
        for affine in self.layers.values():
            if type(affine) is layers.Affine:
                affine.dW = None   # the weights took their gradients directly
        return loss

    def _params_held(self, plan):
        """True when ``params`` holds exactly the arrays the layers compute with
        (``W{i}``, ``b{i}`` of ``Affine{i}``): only then is updating the layers' arrays
        the update ``SGD.update(params, gradient(x, t))`` makes."""
        params = self._params
        if len(params) != 2 * len(plan.Ws):
            return False
        for i, (W, b) in enumerate(zip(plan.Ws, plan.bs), start=1):
            if params.get(f"W{i}") is not W or params.get(f"b{i}") is not b:
                return False
        return True

    def train_step(self, x: ArrayLike, t: ArrayLike, optimizer: SupportsUpdate,
                   sample_weight: ArrayLike | None = None, *,
                   weight_decay: float | None = None) -> float:
        """One training step, ``optimizer.update(params, gradient(x, t))``, at full speed.

        Fused (see :meth:`fused_sgd_step`) when the optimizer is plain SGD;
        the step of every front door (``fastmlp._loop.step``). Returns the
        loss before the update; when it is NaN or infinite no update is applied.
        """
        return _loop.step(self, optimizer, x, t, sample_weight, weight_decay)


class TwoLayerNet(_networks.TwoLayerNet, MultiLayerNet):
    # the book's two-layer constructor (_networks.TwoLayerNet) over the MultiLayerNet above
    __doc__ = _networks.TwoLayerNet.__doc__
