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
import math

import numpy as np

from . import _backend, _networks, layers
from .optimizers import SGD
from ._validation import as_float, check_positive_float, check_targets

_ACTIVATION_NAMES = ("relu", "sigmoid")          # index = the kernel's activation code
_LAYER_CLASSES = (layers.Affine, layers.Relu, layers.Sigmoid, layers.SoftmaxWithLoss,
                  layers.MSELoss)
_ALIGN = 64   # bytes: every workspace buffer starts on a cache line


class _Fused:
    """What one fused call runs: the weights the layers hold and the structure they form."""

    __slots__ = ("Ws", "bs", "sizes", "activation", "output", "dtype", "params")

    def __init__(self, Ws, bs, sizes, activation, output):
        self.Ws, self.bs, self.sizes, self.activation, self.output = Ws, bs, sizes, activation, output
        self.dtype = Ws[0].dtype.type
        self.params = Ws + bs

    def key(self, n):
        """Everything a workspace's buffers depend on."""
        return n, self.sizes, self.dtype, self.activation


class _Workspace:
    """Buffers of one structure and batch size: outputs, masks and gradients per layer,
    parameter gradients, labels, all carved from one block of memory (so whether an
    input aliases any of them is one bounds check)."""

    def __init__(self, key):
        n, sizes, dtype, activation = key
        self.key = key
        relu = _ACTIVATION_NAMES[activation] == "relu"
        shapes = [(n, m) for m in sizes[1:]]
        plan = ([(s, dtype) for s in shapes] * 2
                + [((k, m), dtype) for k, m in zip(sizes[:-1], sizes[1:])]
                + [((m,), dtype) for m in sizes[1:]]
                + [((n,), np.intp)]
                + ([(s, np.bool_) for s in shapes[:-1]] if relu else []))
        sizes_bytes = [-(-math.prod(shape) * np.dtype(dt).itemsize // _ALIGN) * _ALIGN
                       for shape, dt in plan]
        self.block = np.empty(sum(sizes_bytes) + _ALIGN, np.uint8)
        offset = -self.block.ctypes.data % _ALIGN
        views = []
        for (shape, dt), size in zip(plan, sizes_bytes):
            count = math.prod(shape)
            views.append(self.block[offset:offset + count * np.dtype(dt).itemsize]
                         .view(dt).reshape(shape))
            offset += size
        L = len(shapes)
        self.hs, self.ds = views[:L], views[L:2 * L]
        self.dWs, self.dbs = views[2 * L:3 * L], views[3 * L:4 * L]
        self.labels = views[4 * L]   # the step's labels, kept for lastLayer.t
        self.masks = (views[4 * L + 1:] if relu else [None] * (L - 1)) + [None]
        self.mask_bytes = [None if m is None else m.view(np.uint8) for m in self.masks]
        self.grads = []   # (key, buffer) in params order: W1, b1, W2, ...
        for i, (dW, db) in enumerate(zip(self.dWs, self.dbs), start=1):
            self.grads += [(f"W{i}", dW), (f"b{i}", db)]

    def holds(self, a):
        """True when array ``a`` may share memory with these buffers."""
        return _backend.mlp_overlaps(self.block, a)


class _CompiledNet:
    """The fused paths shared by MultiLayerNet and TwoLayerNet (mixed in before the book's class).

    Every call re-derives the network from what it holds: the layer objects in
    ``layers`` and ``last_layer``, the arrays the Affine layers hold. The fused
    kernel runs only when these and the public attributes (``input_size``,
    ``hidden_size_list``, ``output_size``, ``dtype``, ``activation``,
    ``loss_name``) describe one network; anything else (an edited layer list,
    a replaced parameter of another dtype or layout, a changed attribute) runs
    the book's layer-by-layer path, which checks each layer as it goes. The
    kernel itself checks every array it is handed, and the buffers it writes
    are keyed on the whole structure, so no change between calls can make it
    read or write out of bounds.
    """

    _workspace = None

    def _fused(self, writeable=False):
        """A :class:`_Fused` for the network as it is now, or None (then the layer path runs)."""
        if not _backend.USE_BLAS:
            return None
        found = _backend.mlp_fusable(self, _LAYER_CLASSES, writeable)
        if found is None or list(self.layers) != self._layer_names(len(found[0])):
            return None
        return _Fused(*found)

    def _layer_names(self, L):
        names = self.__dict__.get("_names_cache")
        if names is None or len(names) != 2 * L - 1:
            names = []
            for i in range(1, L + 1):
                names.append(f"Affine{i}")
                if i < L:
                    names.append(f"{self._activation_layer_name}{i}")
            self._names_cache = names
        return names

    def _weights(self, writeable=False):
        """(Ws, bs) the fused kernel would run with, or None."""
        fused = self._fused(writeable)
        return None if fused is None else (fused.Ws, fused.bs)

    def predict(self, x):
        x = self._check_x(x, finite=False)
        fused = self._fused()
        if fused is None:
            return super().predict(x)
        x = self._own(x, fused, 0.0)
        hs = [np.empty((x.shape[0], m), fused.dtype) for m in fused.sizes[1:]]
        _backend.mlp_predict(x, fused.Ws, fused.bs, hs, fused.activation)
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
        lr = getattr(optimizer, "lr", None)
        fused = None
        if type(optimizer) is SGD and type(lr) is float and 0 < lr < math.inf:
            fused = self._fused(writeable=True)
        if fused is not None:
            loss = self._run(fused, x, t, sample_weight, sgd_lr=lr)
            for affine in self.layers.values():
                if type(affine) is layers.Affine:
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
        fused = self._fused()
        if fused is None:
            if sample_weight is not None:
                raise ValueError("sample_weight needs the compiled path (numpy's BLAS was not "
                                 "found, or the parameters or layers are not the fused "
                                 "network's: C-contiguous arrays of the network's dtype)")
            return super().gradient(x, t)
        self._run(fused, x, t, sample_weight)
        return dict(self._workspace.grads)

    def _run(self, fused, x, t, sample_weight, sgd_lr=0.0):
        """Check the batch, run the compiled pass, record the book's attributes; return the loss."""
        # NaN/inf in x is caught after the pass (it always makes the loss non-finite),
        # which saves a full scan of x per step; params are never touched either way.
        x = self._check_x(x, finite=False)
        decay = self.weight_decay_lambda
        if type(decay) is not float or not 0 <= decay < math.inf:
            decay = check_positive_float(decay, "weight_decay_lambda", allow_zero=True)
        if sample_weight is not None:
            sample_weight = as_float(sample_weight, "sample_weight", dtype=fused.dtype, ndim=1,
                                     finite=True)
            if sample_weight.shape[0] != x.shape[0] or (sample_weight < 0).any():
                raise ValueError(f"sample_weight must hold {x.shape[0]} non-negative weights, "
                                 f"got shape {sample_weight.shape}")
        key = fused.key(x.shape[0])
        ws = self._workspace
        if ws is None or ws.key != key or ws.holds(x) or ws.holds(t) or ws.holds(sample_weight):
            # new buffers; also when an input is one of the old ones (a layer's cached
            # activation, a returned gradient passed back in): the call then neither
            # reads a buffer it is writing nor overwrites an array it was given
            ws = _Workspace(key)
        n_classes = fused.sizes[-1]
        labels = onehot = None
        if fused.output == 1:   # mse
            onehot = self._check_t(t, x.shape[0])
        elif not _backend.copy_labels(t, ws.labels, n_classes):   # the usual case, in C
            labels, onehot = check_targets(t, x.shape[0], n_classes, fused.dtype, copy=False)
            if labels is not None:   # our own copy: the caller may change theirs after the call
                np.copyto(ws.labels, labels)
        if onehot is None:
            labels = t = ws.labels
        else:
            t = onehot = self._own(onehot, fused, sgd_lr)
        x = self._own(x, fused, sgd_lr)
        if sample_weight is not None:
            sample_weight = self._own(sample_weight, fused, sgd_lr)
        self._workspace = ws
        loss, sum_sq = _backend.mlp_gradient(x, labels, onehot, sample_weight, fused.Ws, fused.bs,
                                             ws.hs, ws.mask_bytes, ws.ds, ws.dWs, ws.dbs,
                                             fused.activation, fused.output, decay, sgd_lr)
        if not math.isfinite(loss) and not np.isfinite(x).all():
            raise ValueError("x contains NaN or infinity")
        total = loss + 0.5 * decay * sum_sq
        self._record(x, t, ws, loss, total)
        return total

    @staticmethod
    def _own(a, fused, sgd_lr):
        """``a`` as an aligned C-contiguous array, copied when a fused update would change
        it while the kernel reads it (``a`` shares memory with a weight or bias)."""
        if (not (a.flags.c_contiguous and a.flags.aligned)
                or (sgd_lr and any(np.may_share_memory(a, p) for p in fused.params))):
            return np.array(a, order="C")
        return a

    def _record(self, x, t, ws, data_loss, loss):
        """Leave the book's layer attributes as the layer-by-layer path would."""
        layer_list = list(self.layers.values())
        inputs = [x] + ws.hs[:-1]
        for affine, a, dW, db in zip(layer_list[::2], inputs, ws.dWs, ws.dbs):
            affine.x, affine.original_x_shape, affine.dW, affine.db = a, a.shape, dW, db
        attribute, values = ("mask", ws.masks) if self.activation == "relu" else ("out", ws.hs)
        for layer, value in zip(layer_list[1::2], values):
            setattr(layer, attribute, value)
        self.last_layer.y, self.last_layer.t, self.last_layer.loss = ws.hs[-1], t, data_loss
        self.last_loss = loss


class MultiLayerNet(_CompiledNet, _networks.MultiLayerNet):
    __doc__ = _networks.MultiLayerNet.__doc__
    layers_module = layers


class TwoLayerNet(_CompiledNet, _networks.TwoLayerNet):
    __doc__ = _networks.TwoLayerNet.__doc__
    layers_module = layers


__all__ = ["MultiLayerNet", "TwoLayerNet"]
