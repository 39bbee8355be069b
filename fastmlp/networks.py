"""The book's networks on compiled kernels.

``predict`` and ``gradient`` run the whole network in one compiled call
(``fastmlp._kernels.mlp``) over buffers kept for the current batch size,
so a training step allocates no arrays after the first. The layer objects
in ``layers`` still see every step: after ``gradient`` their book
attributes (``Affine.x/dW/db``, ``Relu.mask``, ``lastLayer.y/t/loss``)
point at the step's buffers.

The arrays ``gradient`` returns are those buffers: the next call to
``gradient`` overwrites them (copy them to keep them). One network must not
run ``gradient`` from two threads at once; ``predict`` is safe from many.
"""
import functools
import math

import numpy as np

from . import _backend, _networks, layers
from .optimizers import SGD
from ._validation import as_float, check_targets

_ACTIVATION_CODES = {"relu": 0, "sigmoid": 1}
_OUTPUT_CODES = {"cross_entropy": 0, "mse": 1}


class _Workspace:
    """Buffers of one batch size: outputs, masks and gradients per layer, parameter gradients."""

    def __init__(self, n, sizes, dtype, relu):
        shapes = [(n, m) for m in sizes[1:]]
        self.n = n
        self.hs = [np.empty(s, dtype) for s in shapes]
        self.ds = [np.empty(s, dtype) for s in shapes]
        self.masks = [np.empty(s, np.bool_) if relu else None for s in shapes[:-1]] + [None]
        self.mask_bytes = [None if m is None else m.view(np.uint8) for m in self.masks]
        self.labels = np.empty(n, np.intp)   # the step's labels, kept for lastLayer.t
        self.dWs = [np.empty((k, m), dtype) for k, m in zip(sizes[:-1], sizes[1:])]
        self.dbs = [np.empty(m, dtype) for m in sizes[1:]]
        self.grads = []   # (key, buffer) in params order: W1, b1, W2, ...
        for i, (dW, db) in enumerate(zip(self.dWs, self.dbs), start=1):
            self.grads += [(f"W{i}", dW), (f"b{i}", db)]


class _CompiledNet:
    """The fused paths shared by MultiLayerNet and TwoLayerNet (mixed in before the book's class)."""

    _workspace = None

    def _affines(self):
        return [self.layers[name] for name in self._affine_names]

    @functools.cached_property
    def _affine_names(self):
        return [f"Affine{i}" for i in range(1, self.hidden_layer_num + 2)]

    @functools.cached_property
    def _activation_names(self):
        return [f"{self._activation_layer_name}{i}" for i in range(1, self.hidden_layer_num + 1)]

    def _weights(self, writeable=False):
        """(Ws, bs) as the layers hold them, or None when one is not a C-contiguous array
        of the network's dtype (writeable when asked), or the BLAS was not found: then
        the layer-by-layer path runs. A parameter of the wrong shape raises ValueError."""
        if not _backend.USE_BLAS:
            return None
        return _backend.mlp_parameters(self._affines(), self._sizes(), self.dtype, writeable)

    def _sizes(self):
        return (self.input_size, *self.hidden_size_list, self.output_size)

    def predict(self, x):
        x = self._check_x(x, finite=False)
        weights = self._weights()
        if weights is None:
            return super().predict(x)
        x = np.ascontiguousarray(x)
        hs = [np.empty((x.shape[0], m), self.dtype) for m in self._sizes()[1:]]
        _backend.mlp_predict(x, *weights, hs, _ACTIVATION_CODES[self.activation])
        return hs[-1]

    def accuracy(self, x, t):
        if self.loss_name != "cross_entropy":
            return super().accuracy(x, t)
        x = self._check_x(x, finite=False)
        labels, onehot = check_targets(t, x.shape[0], self.output_size, self.dtype)
        if labels is None:
            labels = onehot.argmax(axis=1)
        return float(np.count_nonzero(self.predict(x).argmax(axis=1) == labels) / x.shape[0])

    def train_step(self, x, t, optimizer, sample_weight=None):
        """One training step, ``optimizer.update(params, gradient(x, t))``, at full speed.

        With fastmlp's plain ``SGD`` the update is fused into the backward
        pass (each W is updated by its own gradient GEMM, no gradient array is
        stored). Returns the loss before the update; when it is NaN or
        infinite no update is applied.
        """
        weights = self._weights(writeable=True) if type(optimizer) is SGD else None
        if weights is not None:
            loss = self._run(weights, x, t, sample_weight, sgd_lr=optimizer.lr)
            for affine in self._affines():
                affine.dW = None   # fused: the weights took their gradients directly
            return loss
        grads = self.gradient(x, t, sample_weight)
        if math.isfinite(self.last_loss):
            optimizer.update(self.params, grads)
        return self.last_loss

    def gradient(self, x, t, sample_weight=None):
        """Gradient of ``loss`` by backpropagation, the whole network in one compiled call.

        Parameters
        ----------
        x : array_like, shape (N, input_size), finite
        t : array_like, labels (N,) or one-hot (N, output_size); float
            targets (N, output_size) when ``loss='mse'``
        sample_weight : array_like, shape (N,), optional
            Per-sample weights w: the loss becomes sum(w_i * loss_i) / N.

        Returns
        -------
        dict
            ``W1, b1, ...``: the step's gradient buffers (overwritten by the
            next call). With weight decay ``W{i}`` includes ``lambda * W{i}``.
        """
        weights = self._weights()
        if weights is None:
            if sample_weight is not None:
                raise ValueError("sample_weight needs the compiled path (numpy's BLAS was not "
                                 "found or the parameters are not C-contiguous)")
            return super().gradient(x, t)
        self._run(weights, x, t, sample_weight)
        return dict(self._workspace.grads)

    def _run(self, weights, x, t, sample_weight, sgd_lr=0.0):
        """Check the batch, run the compiled pass, record the book's attributes; return the loss."""
        # NaN/inf in x is caught after the pass (it always makes the loss non-finite),
        # which saves a full scan of x per step; params are never touched either way.
        x = self._check_x(x, finite=False)
        if sample_weight is not None:
            sample_weight = as_float(sample_weight, "sample_weight", dtype=self.dtype, ndim=1,
                                     finite=True)
            if sample_weight.shape[0] != x.shape[0] or (sample_weight < 0).any():
                raise ValueError(f"sample_weight must hold {x.shape[0]} non-negative weights, "
                                 f"got shape {sample_weight.shape}")
            sample_weight = np.ascontiguousarray(sample_weight)
        ws = self._workspace
        if ws is None or ws.n != x.shape[0]:
            ws = self._workspace = _Workspace(x.shape[0], self._sizes(), self.dtype,
                                              self.activation == "relu")
        labels = onehot = None
        if self.loss_name == "mse":
            onehot = self._check_t(t, x.shape[0])
        elif not _backend.copy_labels(t, ws.labels, self.output_size):   # the usual case, in C
            labels, onehot = check_targets(t, x.shape[0], self.output_size, self.dtype, copy=False)
            if labels is not None:   # our own copy: the caller may change theirs after the call
                np.copyto(ws.labels, labels)
        if onehot is None:
            labels = t = ws.labels
        else:
            t = onehot = np.ascontiguousarray(onehot)
        x = np.ascontiguousarray(x)
        loss, sum_sq = _backend.mlp_gradient(x, labels, onehot, sample_weight, *weights, ws.hs,
                                             ws.mask_bytes, ws.ds, ws.dWs, ws.dbs,
                                             _ACTIVATION_CODES[self.activation],
                                             _OUTPUT_CODES[self.loss_name], self.weight_decay_lambda,
                                             sgd_lr)
        if not math.isfinite(loss) and not np.isfinite(x).all():
            raise ValueError("x contains NaN or infinity")
        total = loss + 0.5 * self.weight_decay_lambda * sum_sq
        self._record(x, t, ws, loss, total)
        return total

    def _record(self, x, t, ws, data_loss, loss):
        """Leave the book's layer attributes as the layer-by-layer path would."""
        layers = self.layers
        inputs = [x] + ws.hs[:-1]
        for name, a, dW, db in zip(self._affine_names, inputs, ws.dWs, ws.dbs):
            affine = layers[name]
            affine.x, affine.original_x_shape, affine.dW, affine.db = a, a.shape, dW, db
        attribute, values = ("mask", ws.masks) if self.activation == "relu" else ("out", ws.hs)
        for name, value in zip(self._activation_names, values):
            setattr(layers[name], attribute, value)
        self.last_layer.y, self.last_layer.t, self.last_layer.loss = ws.hs[-1], t, data_loss
        self.last_loss = loss


class MultiLayerNet(_CompiledNet, _networks.MultiLayerNet):
    __doc__ = _networks.MultiLayerNet.__doc__
    layers_module = layers


class TwoLayerNet(_CompiledNet, _networks.TwoLayerNet):
    __doc__ = _networks.TwoLayerNet.__doc__
    layers_module = layers


__all__ = ["MultiLayerNet", "TwoLayerNet"]
