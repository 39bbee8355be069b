"""The book's ``MultiLayerNetExtend`` on compiled layers (``fastmlp.layers``).

The book's logic is written once in ``fastmlp._networks_extend``; here it runs on
the compiled ``Dropout``, ``BatchNormalization``, ``Affine``, ... layers, and
``predict`` (inference mode), ``gradient`` and the fused SGD step run the whole
network, dropout and batch normalisation included, in one compiled call
(``fastmlp._fused_extend``) whenever ``layers`` holds exactly the book's sequence;
a network with neither is a ``MultiLayerNet`` and takes its fused path
(``fastmlp.networks``). Anything else (an edited layer list, parameters of
another dtype or layout) runs the layers one by one.

As with ``MultiLayerNet``, the arrays ``gradient`` returns are buffers that the
next call overwrites, and the batch-norm layers' running statistics are updated
in place by the fused path (the layer path, like the book's, rebinds new arrays).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _networks_extend, layers, networks
from ._fused_extend import FusedExtend
from ._typing import FloatArray, ParamDict, Seed
from ._validation import check_positive_float

__all__ = ["MultiLayerNetExtend", "extensions"]


def extensions(net: Any) -> tuple[float, bool]:
    """``(dropout ratio, batch_norm)`` of a network: (0.0, False) for a plain one."""
    dropout = float(net.dropout_ration) if getattr(net, "use_dropout", False) else 0.0
    return dropout, bool(getattr(net, "use_batchnorm", False))


class MultiLayerNetExtend(_networks_extend.MultiLayerNetExtend, networks.MultiLayerNet):
    __doc__ = _networks_extend.MultiLayerNetExtend.__doc__
    layers_module = layers

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: str | float = "relu",
                 weight_decay_lambda: float = 0, use_dropout: bool = False,
                 dropout_ration: float = 0.5, use_batchnorm: bool = False, *,
                 dtype: DTypeLike = np.float64, seed: Seed = None,
                 loss: str = "cross_entropy") -> None:
        super().__init__(input_size, hidden_size_list, output_size, activation, weight_init_std,
                         weight_decay_lambda, use_dropout, dropout_ration, use_batchnorm,
                         dtype=dtype, seed=seed, loss=loss)
        self._fused_extend = FusedExtend()

    def predict(self, x: ArrayLike, train_flg: bool = False) -> FloatArray:
        """Scores (logits) for a batch; ``train_flg`` as the book's (see the class notes)."""
        if not self._has_mode_layers():
            return networks.MultiLayerNet.predict(self, x)
        x = self._check_x(x, finite=False)
        fused = None if train_flg else self._fused_extend.plan(self)
        if fused is None:
            return self._predict(x, train_flg)
        return self._fused_extend.predict(self, fused, x)

    def gradient(self, x: ArrayLike, t: ArrayLike, sample_weight: ArrayLike | None = None, *,
                 weight_decay: float | None = None) -> ParamDict:
        """Gradient of ``loss(x, t, train_flg=True)`` by backpropagation, the whole network in
        one compiled call: ``W1, b1, gamma1, beta1, ...`` (the book's keys), buffers that the
        next call overwrites. Arguments as ``MultiLayerNet.gradient``."""
        if not self._has_mode_layers():
            return networks.MultiLayerNet.gradient(self, x, t, sample_weight,
                                                   weight_decay=weight_decay)
        fused = self._fused_extend.plan(self)
        if fused is None:
            if sample_weight is not None:
                raise ValueError("sample_weight needs the compiled path (the layers or "
                                 "parameters are not the fused network's)")
            return self._layer_gradient(x, t, weight_decay)
        self._fused_extend.run(self, fused, x, t, sample_weight, weight_decay)
        return self._fused_extend.gradients(fused)

    def fused_sgd_step(self, x: ArrayLike, t: ArrayLike, lr: float,
                       sample_weight: ArrayLike | None = None,
                       weight_decay: float | None = None) -> float | None:
        """Forward, backward and ``p -= lr * grad`` for every W, b, gamma and beta in one
        compiled pass; None when it does not apply (see ``MultiLayerNet.fused_sgd_step``)."""
        lr = check_positive_float(lr, "lr")
        fused = self._fused_extend.plan(self, writeable=True)
        if (fused is None or not fused.has_mode_layers()) and not self._has_mode_layers():
            return networks.MultiLayerNet.fused_sgd_step(self, x, t, lr, sample_weight,
                                                         weight_decay)
        if fused is None or not self._extend_params_held(fused):
            return None
        # the layers' dW, dgamma and dbeta are None afterwards (no gradient was stored)
        return self._fused_extend.run(self, fused, x, t, sample_weight, weight_decay, sgd_lr=lr)

    def _extend_params_held(self, plan):
        """True when ``params`` holds exactly the arrays the layers compute with (``W{i}``,
        ``b{i}``, and ``gamma{i}``, ``beta{i}`` of each batch norm): only then is updating
        the layers' arrays the update ``SGD.update(params, gradient(x, t))`` makes."""
        return plan.params_held(self._params)
