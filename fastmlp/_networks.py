"""The book's networks, written once against a layers module (numpy only).

``MultiLayerNet`` and ``TwoLayerNet`` follow "Deep Learning from Scratch"
(``common/multi_layer_net.py`` and ``ch05/two_layer_net.py``). They never
import a layers module: a concrete network is a subclass that sets the class
attribute ``layers_module`` (``fastmlp.networks``: compiled layers plus the
fused whole-network path; ``fastmlp.reference.networks``: pure numpy), so the
book's logic lives here once and the reference stays free of compiled code.
A concrete ``TwoLayerNet`` is ``(_networks.TwoLayerNet, <its MultiLayerNet>)``.
The module must provide ``Affine(W, b)`` (with ``dW`` and ``db`` set by
``backward``), ``Relu()``, ``Sigmoid()``, ``Tanh()``, ``Identity()``, ``SoftmaxWithLoss()``, ``MSELoss()``,
``SigmoidWithLoss()`` and ``PoissonLoss()`` with the book's ``forward``/``backward`` methods.

Differences from the book: a ``seed`` (None draws as the book does, from numpy's global random
state; an int keeps its own stream), a ``dtype`` (float32 or float64) for the parameters and the
computation, arguments validated before any state changes, ``accuracy`` reads one-hot targets
correctly, ``gradient`` takes the weight decay of one call as an argument, and
``config()``/``from_config()`` describe a network for persistence.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from fastmlp import _describe, gradient as _gradient
from fastmlp._params import Params
from fastmlp._random import check_weight_init_std, init_scale, normal_source
from fastmlp._typing import FloatArray, ParamDict, Seed
from fastmlp._validation import (as_float, check_dtype, check_positive_float, check_positive_int,
                                 check_target_range, check_targets, check_x)

__all__ = ["MultiLayerNet", "TwoLayerNet"]
_Net = TypeVar("_Net", bound="MultiLayerNet")

_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": "Identity"}
_PARAM_NAME = re.compile(r"^([Wb])([1-9][0-9]*)$")
_AFFINE_NAME = re.compile(r"^Affine([1-9][0-9]*)$")
_LOSS_LAYERS = {"cross_entropy": "SoftmaxWithLoss", "mse": "MSELoss",
                "logistic": "SigmoidWithLoss", "poisson": "PoissonLoss"}


class MultiLayerNet:
    """Fully connected network: (Affine, activation) per hidden layer, Affine, SoftmaxWithLoss.

    Parameters
    ----------
    input_size : int
        Number of input features (784 for MNIST).
    hidden_size_list : sequence of int
        Units per hidden layer, e.g. ``[100, 100, 100]``.
    output_size : int
        Number of classes.
    activation : {'relu', 'sigmoid', 'tanh', 'identity'}, default 'relu'
        The hidden layers' activation layer; 'identity' is an ``Identity`` layer (no-op).
    weight_init_std : {'relu', 'he', 'sigmoid', 'xavier', 'tanh'} or float, default 'relu'
        'relu'/'he': ``sqrt(2 / n_in)`` (He); 'sigmoid'/'xavier'/'tanh':
        ``sqrt(1 / n_in)`` (Xavier); a number: that standard deviation.
    weight_decay_lambda : float, default 0
        L2 strength: the loss adds ``0.5 * lambda * sum(W**2)`` for every
        weight matrix and ``gradient`` adds ``lambda * W`` to each ``dW``.
    dtype : {np.float64, np.float32}, keyword-only
        Dtype of the parameters and of every computation; inputs are converted.
    seed : None, int, numpy.random.Generator or RandomState, keyword-only
        None: numpy's global state, drawn as the book's ``np.random.randn`` (so after
        ``np.random.seed(s)``, the book's weights); an int: ``default_rng(seed)``.
    loss : {'cross_entropy', 'mse', 'logistic', 'poisson'}, keyword-only, default 'cross_entropy'
        The last layer: ``SoftmaxWithLoss`` on class targets (the book's), or on float
        targets ``(N, output_size)`` ``MSELoss`` (identity output), ``SigmoidWithLoss``
        (binary cross-entropy per unit, t in [0, 1]) or ``PoissonLoss`` (exp, t >= 0).

    Attributes
    ----------
    params : dict of ndarray
        ``W1, b1, ..., W{L}, b{L}``, C-contiguous, of ``dtype``; the layers
        hold these arrays by reference.
    layers : OrderedDict
        ``Affine1, Activation_function1, ..., Affine{L}``.
    last_layer : SoftmaxWithLoss
        Also available as ``lastLayer``.

    Notes
    -----
    The layers cache their inputs for backprop, so a network instance must
    not be used from two threads at once.
    """

    layers_module: Any = None   # a layers module; None here (the constructor refuses it)
    _activation_layer_name = "Activation_function"

    def __init__(self, input_size: int, hidden_size_list: Sequence[int], output_size: int,
                 activation: str = "relu", weight_init_std: str | float = "relu",
                 weight_decay_lambda: float = 0, *, dtype: DTypeLike = np.float64,
                 seed: Seed = None, loss: str = "cross_entropy") -> None:
        input_size = check_positive_int(input_size, "input_size")
        if isinstance(hidden_size_list, (str, bytes)) or not hasattr(hidden_size_list, "__iter__"):
            raise TypeError(
                f"hidden_size_list must be a sequence of ints, got {type(hidden_size_list).__name__}")
        hidden_size_list = [check_positive_int(n, "hidden_size_list entry") for n in hidden_size_list]
        output_size = check_positive_int(output_size, "output_size")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(_ACTIVATIONS)}, got {activation!r}")
        weight_init_std = check_weight_init_std(weight_init_std)
        weight_decay_lambda = check_positive_float(weight_decay_lambda, "weight_decay_lambda",
                                                   allow_zero=True)
        dtype = check_dtype(dtype)
        if loss not in _LOSS_LAYERS:
            raise ValueError(f"loss must be one of {list(_LOSS_LAYERS)}, got {loss!r}")
        module = type(self).layers_module
        if module is None:
            raise TypeError(
                f"{type(self).__name__} has no layers_module; use fastmlp.{type(self).__name__} "
                f"or fastmlp.reference.{type(self).__name__}")

        self.input_size = input_size
        self.hidden_size_list = hidden_size_list
        self.hidden_layer_num = len(hidden_size_list)
        self.output_size = output_size
        self.activation = activation
        self.weight_decay_lambda = weight_decay_lambda
        self.dtype = dtype
        params = self._init_params(weight_init_std, normal_source(seed))
        self.layers = self._build_layers(module, _ACTIVATIONS[activation], params)
        self.params = params
        self.loss_name = loss
        self.last_loss = None   # loss of the last gradient() call, weight decay included
        self.last_layer = getattr(module, _LOSS_LAYERS[loss])()

    def __repr__(self) -> str:
        return _describe.network_repr(self)

    # -- construction ------------------------------------------------------

    def _init_params(self, weight_init_std, rng):
        """``W{i}`` of ``scale * standard normal`` (drawn in float64, then cast), ``b{i}`` zero."""
        sizes = [self.input_size, *self.hidden_size_list, self.output_size]
        params = {}
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            scale = init_scale(weight_init_std, n_in)
            params[f"W{i}"] = (scale * rng.standard_normal((n_in, n_out))).astype(self.dtype)
            params[f"b{i}"] = np.zeros(n_out, dtype=self.dtype)
        return params

    def _build_layers(self, module, activation_class, params):
        layers = OrderedDict()
        for name in self._layer_names(self.hidden_layer_num + 1):
            if name.startswith("Affine"):
                i = name[len("Affine"):]
                layers[name] = module.Affine(params[f"W{i}"], params[f"b{i}"])
            else:
                layers[name] = getattr(module, activation_class)()
        return layers

    def _layer_names(self, n_affine):
        """``Affine1, <activation>1, ..., Affine{n_affine}``: the layers' names, in order."""
        names = []
        for i in range(1, n_affine + 1):
            names.append(f"Affine{i}")
            if i < n_affine:
                names.append(f"{self._activation_layer_name}{i}")
        return names

    @property
    def params(self) -> ParamDict:
        """``W1, b1, ...``; an entry assigned here is what the layers compute with."""
        return self._params

    @params.setter
    def params(self, params: Mapping[str, FloatArray]) -> None:
        if not hasattr(params, "items"):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        self._params = Params(self, params)
        for key, value in self._params.items():
            self._hand_to_layer(key, value)

    def _hand_to_layer(self, key, value):
        """Make the Affine layer of parameter ``key`` (``W{i}`` or ``b{i}``) hold ``value``."""
        match = _PARAM_NAME.match(key) if isinstance(key, str) else None
        layers = getattr(self, "layers", None)
        if match is None or not hasattr(layers, "get"):
            return
        layer = layers.get(f"Affine{match.group(2)}")
        if layer is not None:
            setattr(layer, match.group(1), value)

    @property
    def lastLayer(self) -> Any:  # noqa: N802 -- the book's name in two_layer_net.py
        """The loss layer (the book's name in ``two_layer_net.py``); same as ``last_layer``."""
        return self.last_layer

    @lastLayer.setter
    def lastLayer(self, layer: Any) -> None:  # noqa: N802
        self.last_layer = layer

    # -- persistence ---------------------------------------------------------

    CONFIG_KEYS: tuple[str, ...] = ("input_size", "hidden_size_list", "output_size", "activation",
                                    "weight_decay_lambda", "dtype", "loss")

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this network, as a JSON-able dict
        (``fastmlp.save`` writes it; the weights are in ``params``)."""
        return {"input_size": self.input_size, "hidden_size_list": list(self.hidden_size_list),
                "output_size": self.output_size, "activation": self.activation,
                "weight_decay_lambda": float(self.weight_decay_lambda),
                "dtype": np.dtype(check_dtype(self.dtype)).name, "loss": self.loss_name}

    @classmethod
    def from_config(cls: type[_Net], config: dict[str, Any],
                    params: Mapping[str, FloatArray] | None = None) -> _Net:
        """The network ``config`` (exactly :meth:`config`'s keys, values checked by the
        constructor) describes, seed 0 and zero weights; ``params`` (name -> ndarray, all
        of them, shapes and float widths checked before any is copied) copied in."""
        if not isinstance(config, dict):
            raise TypeError(f"config must be a dict, got {type(config).__name__}")
        missing = [k for k in cls.CONFIG_KEYS if k not in config]
        unknown = sorted(map(str, set(config) - set(cls.CONFIG_KEYS)))
        if missing or unknown:
            raise ValueError(f"config of {cls.__name__} must have exactly the keys "
                             f"{list(cls.CONFIG_KEYS)}: missing {missing}, unknown {unknown}")
        if config["dtype"] not in ("float32", "float64"):
            raise ValueError(f"config dtype must be 'float32' or 'float64', got {config['dtype']!r}")
        kwargs = dict(config, dtype=np.dtype(config["dtype"]).type)
        net = cls(**kwargs, weight_init_std=0.0, seed=0)
        if params is not None:
            net._copy_params(params)
        return net

    def _copy_params(self, params):
        """Copy ``params`` (name -> array) into ``self.params``, after checking all of them."""
        if not hasattr(params, "items"):
            raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
        if set(params) != set(self.params):
            raise ValueError(f"params must hold exactly {list(self.params)}, got {list(params)}")
        for name, p in self.params.items():
            a = params[name]
            if not (isinstance(a, np.ndarray) and a.shape == p.shape and a.dtype.kind == "f"
                    and a.dtype.itemsize == p.dtype.itemsize):
                got = f"{a.dtype}{a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ValueError(f"params[{name!r}] must be a {p.dtype} array of shape "
                                 f"{p.shape}, got {got}")
        for name, p in self.params.items():
            np.copyto(p, params[name])

    # -- validation ----------------------------------------------------------

    def _check_x(self, x: ArrayLike, finite: bool) -> FloatArray:
        dtype = self.dtype   # public, so checked again
        if dtype is not np.float64 and dtype is not np.float32:
            dtype = check_dtype(dtype)
        checked: FloatArray = check_x(x, dtype=dtype, finite=finite)
        if checked.shape[1] != self.input_size:
            raise ValueError(f"x has {checked.shape[1]} features per sample but the network "
                             f"has input_size={self.input_size}")
        return checked

    def _check_xt(self, x: ArrayLike, t: ArrayLike) -> tuple[FloatArray, np.ndarray]:
        """Validated ``(x, t)`` for the loss: finite float ``x``; labels (intp) or one-hot ``t``."""
        x = self._check_x(x, finite=True)
        return x, self._check_t(t, x.shape[0])

    def _check_t(self, t, n_samples):
        """Labels (intp) or one-hot rows for cross-entropy; else finite (N, output_size) floats."""
        if self.loss_name != "cross_entropy":
            t = as_float(t, "t", dtype=self.dtype, ndim=2, finite=True)
            if t.shape != (n_samples, self.output_size):
                raise ValueError(f"t must have shape {(n_samples, self.output_size)}, got {t.shape}")
            return check_target_range(t, self.loss_name)
        labels, onehot = check_targets(t, n_samples, self.output_size, self.dtype)
        return labels if labels is not None else onehot

    # -- the book's methods --------------------------------------------------

    def _predict(self, x):
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def _loss(self, x, t, decay=None):
        """Loss for already validated ``x`` and ``t``; ``decay`` a checked L2 strength
        (None: ``weight_decay_lambda``)."""
        y = self._predict(x)
        return self.last_layer.forward(y, t) + self._weight_decay(decay)

    def _affine_layers(self):
        """The Affine layers of ``layers``, in order: what ``layers`` holds is the network."""
        affines = [layer for layer in self.layers.values()
                   if isinstance(layer, self.layers_module.Affine)]
        if not affines:
            raise ValueError("layers holds no Affine layer")
        return affines

    def _decay(self, weight_decay=None):
        """The L2 strength of one call: ``weight_decay`` when given, else the attribute
        ``weight_decay_lambda`` (public, so checked every call); errors name the one used."""
        if weight_decay is None:
            return check_positive_float(self.weight_decay_lambda, "weight_decay_lambda",
                                        allow_zero=True)
        return check_positive_float(weight_decay, "weight_decay", allow_zero=True)

    def _weight_decay(self, decay=None):
        """``0.5 * decay * sum(W**2)`` over the Affine layers (None: ``weight_decay_lambda``)."""
        if decay is None:
            decay = self._decay()
        if not decay:
            return 0.0
        total = sum(float(np.sum(affine.W ** 2)) for affine in self._affine_layers())
        return 0.5 * decay * total

    def predict(self, x: ArrayLike) -> FloatArray:
        """Scores (logits, before softmax) for a batch.

        Parameters
        ----------
        x : array_like, shape (N, input_size)

        Returns
        -------
        ndarray, shape (N, output_size), of the network's dtype
        """
        return self._predict(self._check_x(x, finite=False))

    def loss(self, x: ArrayLike, t: ArrayLike) -> float:
        """Mean cross-entropy of ``softmax(predict(x))`` plus the weight-decay term.

        Parameters
        ----------
        x : array_like, shape (N, input_size), finite
        t : array_like, shape (N,) labels or (N, output_size) one-hot

        Returns
        -------
        float
        """
        x, t = self._check_xt(x, t)
        return self._loss(x, t)

    def accuracy(self, x: ArrayLike, t: ArrayLike) -> float:
        """Fraction of samples whose highest score is the true class.

        Parameters
        ----------
        x : array_like, shape (N, input_size)
        t : array_like, shape (N,) labels or (N, output_size) one-hot

        Returns
        -------
        float
        """
        if self.loss_name != "cross_entropy":
            raise TypeError(f"accuracy needs class targets: this network has loss={self.loss_name!r}")
        x = self._check_x(x, finite=False)
        labels, onehot = check_targets(t, x.shape[0], self.output_size, self.dtype)
        if labels is None:
            labels = onehot.argmax(axis=1)
        predicted = self.predict(x).argmax(axis=1)   # the subclass's predict (fused when compiled)
        return float(np.count_nonzero(predicted == labels) / x.shape[0])

    def numerical_gradient(self, x: ArrayLike, t: ArrayLike, h: float | None = None) -> ParamDict:
        """Gradient of ``loss`` by central differences, one parameter element at a time.

        Slow (two forward passes per parameter element): for checking only.

        Parameters
        ----------
        x : array_like, shape (N, input_size), finite
        t : array_like, shape (N,) labels or (N, output_size) one-hot
        h : float, optional
            Step. By default, per parameter array ``p``:
            ``1e-5 * max(1, max|p|)`` in float64 and ``1e-2`` in float32, the
            near-optimal steps for central differences (the book uses 1e-4,
            whose truncation error can dominate small gradient entries).

        Returns
        -------
        dict
            Same keys, shapes and dtype as ``params``.
        """
        x, t = self._check_xt(x, t)
        # Our own copies: x or t may be (a view of) a parameter that is about to be perturbed.
        x, t = np.array(x, copy=True), np.array(t, copy=True)
        if h is not None:
            h = check_positive_float(h, "h")

        def loss_w(_):
            return self._loss(x, t)

        grads = {}
        for name, param in self.params.items():
            grads[name] = _gradient.numerical_gradient(loss_w, param, self._step(param) if h is None else h)
        return grads

    def _step(self, param):
        """Default central-difference step for one parameter array."""
        if self.dtype == np.float32:
            return 1e-2
        return 1e-5 * max(1.0, float(np.abs(param).max()))

    def gradient(self, x: ArrayLike, t: ArrayLike, *,
                 weight_decay: float | None = None) -> ParamDict:
        """Gradient of ``loss`` by backpropagation.

        Parameters
        ----------
        x : array_like, shape (N, input_size), finite
        t : array_like, shape (N,) labels or (N, output_size) one-hot
        weight_decay : float >= 0, optional, keyword-only
            L2 strength of this call only (``weight_decay_lambda`` when None;
            the attribute is not changed).

        Returns
        -------
        dict
            ``W{i}, b{i}`` of each layer ``Affine{i}`` (the book's keys), with
            ``lambda * W{i}`` added to ``W{i}`` under weight decay.
        """
        return self._layer_gradient(x, t, weight_decay)

    def _layer_gradient(self, x, t, weight_decay=None):
        """The book's layer-by-layer backprop (each layer checks what it is given)."""
        x, t = self._check_xt(x, t)
        decay = self._decay(weight_decay)
        self.last_loss = self._loss(x, t, decay)

        dout = self.last_layer.backward(1)
        for layer in reversed(self.layers.values()):
            dout = layer.backward(dout)

        grads = {}   # keyed by layer name, as the book (params hands W{i} to Affine{i})
        for name, affine in self.layers.items():
            match = _AFFINE_NAME.match(name) if isinstance(name, str) else None
            if match and isinstance(affine, self.layers_module.Affine):
                grads["W" + match[1]] = affine.dW + decay * affine.W if decay else affine.dW
                grads["b" + match[1]] = affine.db
        return grads


class TwoLayerNet(MultiLayerNet):
    """The book's two-layer network: Affine1, Relu1, Affine2, SoftmaxWithLoss.

    A ``MultiLayerNet`` with one ReLU hidden layer, the book's layer names
    and a fixed weight standard deviation.

    Parameters
    ----------
    input_size : int
    hidden_size : int
    output_size : int
    weight_init_std : float, default 0.01
        Standard deviation of the initial weights; biases start at zero.
    dtype : {np.float64, np.float32}, keyword-only
    seed : None, int, numpy.random.Generator or RandomState, keyword-only
        As for ``MultiLayerNet``: None draws from numpy's global random state.

    Attributes
    ----------
    params : dict of ndarray
        ``W1, b1, W2, b2``.
    layers : OrderedDict
        ``Affine1, Relu1, Affine2``.
    lastLayer : SoftmaxWithLoss
        Also available as ``last_layer``.
    """

    _activation_layer_name = "Relu"

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float = 0.01, *, dtype: DTypeLike = np.float64,
                 seed: Seed = None) -> None:
        hidden_size = check_positive_int(hidden_size, "hidden_size")
        if isinstance(weight_init_std, str):
            raise TypeError(f"weight_init_std must be a number, got {weight_init_std!r}")
        super().__init__(input_size, [hidden_size], output_size, activation="relu",
                         weight_init_std=weight_init_std, weight_decay_lambda=0,
                         dtype=dtype, seed=seed)
        self.hidden_size = hidden_size

    CONFIG_KEYS = ("input_size", "hidden_size", "output_size", "dtype")

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this network, as a JSON-able dict."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "output_size": self.output_size, "dtype": np.dtype(check_dtype(self.dtype)).name}
