"""The book's ``MultiLayerNetExtend`` on compiled layers (``fastmlp.layers``).

The book's logic is written once in ``fastmlp._networks_extend``; here it runs on
the compiled ``Dropout``, ``BatchNormalization``, ``Affine``, ... layers. A network
that holds no dropout or batch-norm layer (``use_dropout=False`` and
``use_batchnorm=False``, or layers removed) is a ``MultiLayerNet`` and runs
``predict``, ``gradient`` and the fused SGD step as one compiled call
(``fastmlp.networks``); otherwise the layers run one by one, each a compiled kernel.
"""
import numpy as np

from . import _networks_extend, layers, networks

__all__ = ["MultiLayerNetExtend"]


class MultiLayerNetExtend(_networks_extend.MultiLayerNetExtend, networks.MultiLayerNet):
    __doc__ = _networks_extend.MultiLayerNetExtend.__doc__
    layers_module = layers

    def __init__(self, input_size, hidden_size_list, output_size, activation="relu",
                 weight_init_std="relu", weight_decay_lambda=0, use_dropout=False,
                 dropout_ration=0.5, use_batchnorm=False, *, dtype=np.float64, seed=None,
                 loss="cross_entropy"):
        super().__init__(input_size, hidden_size_list, output_size, activation, weight_init_std,
                         weight_decay_lambda, use_dropout, dropout_ration, use_batchnorm,
                         dtype=dtype, seed=seed, loss=loss)

    def predict(self, x, train_flg=False):
        """Scores (logits) for a batch; ``train_flg`` as the book's (see the class notes)."""
        if self._has_mode_layers():
            return _networks_extend.MultiLayerNetExtend.predict(self, x, train_flg)
        return networks.MultiLayerNet.predict(self, x)

    def gradient(self, x, t, sample_weight=None, *, weight_decay=None):
        """Gradient of ``loss(x, t, train_flg=True)`` by backpropagation: ``W1, b1, gamma1,
        beta1, ...`` (the book's keys). Arguments as ``MultiLayerNet.gradient``."""
        if self._has_mode_layers():
            if sample_weight is not None:
                raise ValueError("sample_weight is not supported with dropout or batch "
                                 "normalisation layers")
            return self._layer_gradient(x, t, weight_decay)
        return networks.MultiLayerNet.gradient(self, x, t, sample_weight,
                                               weight_decay=weight_decay)
