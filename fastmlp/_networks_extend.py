"""The book's ``MultiLayerNetExtend`` (``common/multi_layer_net_extend.py``), numpy only.

Written once against a layers module, as ``fastmlp._networks`` is: a concrete
network sets ``layers_module`` (``fastmlp.networks_extend``: compiled layers;
``fastmlp.reference.networks``: pure numpy). The module must provide, beyond
what ``MultiLayerNet`` needs, ``BatchNormalization(gamma, beta)`` and
``Dropout(ratio, rng=)`` with the book's ``forward(x, train_flg)``.

Per hidden layer ``i``: ``Affine{i}``, ``BatchNorm{i}`` (with ``use_batchnorm``),
``Activation_function{i}``, ``Dropout{i}`` (with ``use_dropout``); then the
last ``Affine`` and the loss. ``params`` holds ``W{i}``, ``b{i}`` and, with batch
normalisation, ``gamma{i}`` (ones) and ``beta{i}`` (zeros), in the book's order.
The dropout masks come from the network's stream ``rng``: the Generator the
weights were drawn from (``seed``), shared by every ``Dropout`` layer.
"""
from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from fastmlp import _networks
from fastmlp import gradient as _gradient
from fastmlp._typing import FloatArray, ParamDict, Seed
from fastmlp._validation import check_positive_float

__all__ = ["MultiLayerNetExtend"]

_BN_PARAM = re.compile(r"^(gamma|beta)([1-9][0-9]*)$")


def _check_flag(value, name):
    if not isinstance(value, (bool, np.bool_, numbers.Integral)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _check_ratio(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1], got {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return float(value)


class MultiLayerNetExtend(_networks.MultiLayerNet):
    """The book's extended network: ``MultiLayerNet`` with dropout and batch normalisation.

    Parameters
    ----------
    input_size, hidden_size_list, output_size, activation, weight_init_std,
    weight_decay_lambda
        As ``MultiLayerNet``.
    use_dropout : bool, default False
        A ``Dropout{i}`` after every hidden activation.
    dropout_ration : float in [0, 1], default 0.5
        Their drop ratio (the book's spelling).
    use_batchnorm : bool, default False
        A ``BatchNorm{i}`` between every hidden Affine and its activation.
    dtype, seed, loss : keyword-only
        As ``MultiLayerNet``; the seeded stream also draws the dropout masks.

    Attributes
    ----------
    params : dict of ndarray
        ``W1, b1, ..., W{L}, b{L}`` then ``gamma1, beta1, ...`` (with batch norm).
    layers : OrderedDict
        ``Affine1, [BatchNorm1,] Activation_function1, [Dropout1,] ..., Affine{L}``.
    rng : numpy.random.Generator
        The stream of the dropout masks.

    Notes
    -----
    ``predict``, ``loss`` and ``accuracy`` run in inference mode by default
    (``train_flg=False``: dropout scales by ``1 - ratio``, batch norm uses the
    running statistics); ``gradient`` and ``numerical_gradient`` in training
    mode, as in the book (so each updates the running statistics and draws
    new dropout masks).
    """

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: str | float = "relu",
                 weight_decay_lambda: float = 0, use_dropout: bool = False,
                 dropout_ration: float = 0.5, use_batchnorm: bool = False, *,
                 dtype: DTypeLike = np.float64, seed: Seed = None,
                 loss: str = "cross_entropy") -> None:
        self.use_dropout = _check_flag(use_dropout, "use_dropout")
        self.dropout_ration = _check_ratio(dropout_ration, "dropout_ration")
        self.use_batchnorm = _check_flag(use_batchnorm, "use_batchnorm")
        super().__init__(input_size, hidden_size_list, output_size, activation, weight_init_std,
                         weight_decay_lambda, dtype=dtype, seed=seed, loss=loss)

    # -- construction ------------------------------------------------------

    def _init_params(self, weight_init_std, rng):
        # the network's stream: the weights, then the dropout masks (None: numpy's global
        # state, which fastmlp._random.normal_source hands over as the np.random module)
        self.rng = None if rng is np.random else rng
        params = super()._init_params(weight_init_std, rng)
        if self.use_batchnorm:
            for i, n in enumerate(self.hidden_size_list, start=1):
                params[f"gamma{i}"] = np.ones(n, dtype=self.dtype)
                params[f"beta{i}"] = np.zeros(n, dtype=self.dtype)
        return params

    def _layer_names(self, n_affine):
        names = []
        for i in range(1, n_affine + 1):
            names.append(f"Affine{i}")
            if i < n_affine:
                if self.use_batchnorm:
                    names.append(f"BatchNorm{i}")
                names.append(f"{self._activation_layer_name}{i}")
                if self.use_dropout:
                    names.append(f"Dropout{i}")
        return names

    def _build_layers(self, module, activation_class, params):
        layers = super()._build_layers(module, activation_class, params)   # Affine, activation
        built = type(layers)()
        for name in self._layer_names(self.hidden_layer_num + 1):
            if name.startswith("BatchNorm"):
                i = name[len("BatchNorm"):]
                built[name] = module.BatchNormalization(params[f"gamma{i}"], params[f"beta{i}"])
            elif name.startswith("Dropout"):
                built[name] = module.Dropout(self.dropout_ration, rng=self.rng)
            else:
                built[name] = layers[name]
        return built

    def _hand_to_layer(self, key, value):
        match = _BN_PARAM.match(key) if isinstance(key, str) else None
        if match is None:
            return super()._hand_to_layer(key, value)
        layers = getattr(self, "layers", None)
        layer = layers.get(f"BatchNorm{match.group(2)}") if hasattr(layers, "get") else None
        if layer is not None:
            setattr(layer, match.group(1), value)

    CONFIG_KEYS = _networks.MultiLayerNet.CONFIG_KEYS + ("use_dropout", "dropout_ration",
                                                         "use_batchnorm")

    def config(self) -> dict[str, Any]:
        return dict(super().config(), use_dropout=bool(self.use_dropout),
                    dropout_ration=float(self.dropout_ration),
                    use_batchnorm=bool(self.use_batchnorm))

    # -- streams and statistics (for the estimators' pickles) -------------------

    def set_stream(self, rng: np.random.Generator | int | None) -> None:
        """Draw the dropout masks from ``rng`` (a Generator, an int seed, or None: numpy's
        global random state) from now on: ``rng`` and every Dropout layer's stream."""
        if rng is not None and not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        self.rng = rng
        for layer in self.layers.values():
            if isinstance(layer, self.layers_module.Dropout):
                layer.rng = rng

    def running_statistics(self) -> list[tuple[FloatArray | None, FloatArray | None]]:
        """``[(running_mean, running_var), ...]`` of the batch-norm layers, in order (copies;
        None before their first forward pass)."""
        return [(None if b.running_mean is None else np.array(b.running_mean),
                 None if b.running_var is None else np.array(b.running_var))
                for b in self._bn_layers()]

    def set_running_statistics(
            self, stats: Sequence[tuple[ArrayLike | None, ArrayLike | None]]) -> None:
        """Give the batch-norm layers these ``(running_mean, running_var)`` (copied)."""
        layers = self._bn_layers()
        if len(stats) != len(layers):
            raise ValueError(f"stats must hold {len(layers)} (mean, var) pairs, got {len(stats)}")
        for b, (mean, var) in zip(layers, stats):
            b.running_mean = None if mean is None else np.array(mean, dtype=b.gamma.dtype)
            b.running_var = None if var is None else np.array(var, dtype=b.gamma.dtype)

    # -- the book's methods --------------------------------------------------

    def _is_mode_layer(self, name, layer):
        """Layers whose forward takes ``train_flg`` (the book tells them by name)."""
        module = self.layers_module
        return ("Dropout" in name or "BatchNorm" in name
                or isinstance(layer, (module.Dropout, module.BatchNormalization)))

    def _predict(self, x, train_flg=False):
        for name, layer in self.layers.items():
            if self._is_mode_layer(name, layer):
                x = layer.forward(x, train_flg)
            else:
                x = layer.forward(x)
        return x

    def _loss(self, x, t, decay=None, train_flg=False):
        y = self._predict(x, train_flg)
        return self.last_layer.forward(y, t) + self._weight_decay(decay)

    def _has_mode_layers(self):
        return any(self._is_mode_layer(name, layer) for name, layer in self.layers.items())

    def predict(self, x: ArrayLike, train_flg: bool = False) -> FloatArray:
        """Scores (logits) for a batch; ``train_flg`` as the book's (dropout masks drawn,
        batch statistics used and the running ones updated)."""
        return self._predict(self._check_x(x, finite=False), train_flg)

    def loss(self, x: ArrayLike, t: ArrayLike, train_flg: bool = False) -> float:
        """The data loss of ``predict(x, train_flg)`` plus the weight-decay term."""
        x, t = self._check_xt(x, t)
        return self._loss(x, t, train_flg=train_flg)

    def _bn_layers(self):
        return [layer for layer in self.layers.values()
                if isinstance(layer, self.layers_module.BatchNormalization)]

    def _book_order(self, grads):
        """``W1, b1, gamma1, beta1, W2, ...``: the book's order of the gradient keys."""
        out = {}
        for i in range(1, len(grads) + 1):
            for key in (f"W{i}", f"b{i}", f"gamma{i}", f"beta{i}"):
                if key in grads:
                    out[key] = grads[key]
        return out

    def numerical_gradient(self, x: ArrayLike, t: ArrayLike, h: float | None = None) -> ParamDict:
        """Central differences of ``loss(x, t, train_flg=True)`` per parameter element (the
        book's: with dropout every evaluation draws new masks). Steps as ``MultiLayerNet``'s."""
        x, t = self._check_xt(x, t)
        x, t = np.array(x, copy=True), np.array(t, copy=True)
        if h is not None:
            h = check_positive_float(h, "h")

        def loss_w(_):
            return self._loss(x, t, train_flg=True)

        grads = {name: _gradient.numerical_gradient(loss_w, p, self._step(p) if h is None else h)
                 for name, p in self.params.items()}
        return self._book_order(grads)

    def _layer_gradient(self, x, t, weight_decay=None):
        """The book's backprop in training mode, layer by layer; gamma/beta from BatchNorm."""
        x, t = self._check_xt(x, t)
        decay = self._decay(weight_decay)
        self.last_loss = self._loss(x, t, decay, train_flg=True)
        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)
        grads = {}
        for i, affine in enumerate(self._affine_layers(), start=1):
            grads[f"W{i}"] = affine.dW + decay * affine.W if decay else affine.dW
            grads[f"b{i}"] = affine.db
        for i, bn in enumerate(self._bn_layers(), start=1):
            grads[f"gamma{i}"], grads[f"beta{i}"] = bn.dgamma, bn.dbeta
        return self._book_order(grads)
