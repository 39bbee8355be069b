"""The fused whole-network path of a compiled network (``fastmlp._kernels.mlp``).

A :class:`FusedMLP` belongs to one network (made in its ``__init__``) and
holds what must outlive a call: the workspace of buffers for the current
structure and batch size, so a training step allocates no arrays after the
first. The network calls it explicitly::

    fused = self._fused.plan(self)
    if fused is None:
        return self._layer_gradient(x, t, weight_decay)   # the book's layer path
    self._fused.run(self, fused, x, t, sample_weight, weight_decay)

Every call re-derives the network from what it holds: the layer objects in
``layers`` and ``last_layer``, the arrays the Affine layers hold. The fused
kernel runs only when these and the public attributes (``input_size``,
``hidden_size_list``, ``output_size``, ``dtype``, ``activation``,
``loss_name``) describe one network; anything else (an edited layer list,
a replaced parameter of another dtype or layout, a changed attribute) gets
``None`` from :meth:`FusedMLP.plan`, and the network runs the book's
layer-by-layer path, which checks each layer as it goes. The kernel itself
checks every array it is handed, and the buffers it writes are keyed on the
whole structure, so no change between calls can make it read or write out
of bounds.
"""
import math

import numpy as np

from . import _backend, layers
from ._validation import as_float, check_targets

__all__ = ["FusedMLP", "gradient_layout", "pack_parameters", "packed_views"]

_ACTIVATION_NAMES = ("relu", "sigmoid", "tanh", "identity")   # index = the kernel's code
_LAYER_CLASSES = (layers.Affine, (layers.Relu, layers.Sigmoid, layers.Tanh, layers.Identity),
                  (layers.SoftmaxWithLoss, layers.MSELoss, layers.SigmoidWithLoss,
                   layers.PoissonLoss))   # activations and outputs in the order of their codes
_SOFTMAX_CE = _backend.OUTPUT_CODES["cross_entropy"]   # the one output on class labels
_ALIGN = 64   # bytes: every workspace buffer starts on a cache line


class Plan:
    """What one fused call runs: the weights the layers hold and the structure they form."""

    __slots__ = ("Ws", "bs", "sizes", "activation", "output", "dtype")

    def __init__(self, Ws, bs, sizes, activation, output):
        self.Ws, self.bs, self.sizes, self.activation, self.output = Ws, bs, sizes, activation, output
        self.dtype = Ws[0].dtype.type

    def key(self, n):
        """Everything a workspace's buffers depend on."""
        return n, self.sizes, self.dtype, self.activation


def gradient_layout(sizes, dtype):
    """Where ``W1, b1, W2, b2, ...`` of a network with layer widths ``sizes`` lie in one
    packed gradient buffer of ``dtype``: each starts on a cache line, the gaps between
    them are zero padding, and one more cache line of :data:`extra` slots ends it (for
    scalars reduced along with the gradients, such as a data-parallel step's loss).

    Returns ``(shapes, offsets, length)``: per gradient its shape and first element, and
    the buffer's length in elements. The layout depends only on ``sizes`` and ``dtype``
    (not on the batch), so every process training the same network agrees on it.
    """
    per_line = _ALIGN // np.dtype(dtype).itemsize
    shapes, offsets, pos = [], [], 0
    for k, m in zip(sizes[:-1], sizes[1:]):
        for shape in ((k, m), (m,)):
            shapes.append(shape)
            offsets.append(pos)
            pos += -(-math.prod(shape) // per_line) * per_line
    return shapes, offsets, pos + per_line


def packed_views(packed, shapes, offsets):
    """The gradient arrays of :func:`gradient_layout` as views of the 1-D ``packed``."""
    return [packed[o:o + math.prod(s)].reshape(s) for s, o in zip(shapes, offsets)]


def pack_parameters(net):
    """Move ``net.params`` (``W1, b1, W2, ...``) into one cache-line aligned buffer laid out
    by :func:`gradient_layout` (the gradients' layout, padding zero), each entry rebound to
    its view (so the layers compute with the views); returns the buffer.

    A whole-vector solver (L-BFGS) then reads or writes every parameter with one copy, and
    a packed gradient lines up with it element for element."""
    sizes = [net.input_size, *net.hidden_size_list, net.output_size]
    dtype = np.dtype(net.params["W1"].dtype)
    shapes, offsets, length = gradient_layout(sizes, dtype)
    block = np.zeros(length * dtype.itemsize + _ALIGN, np.uint8)
    start = -block.ctypes.data % _ALIGN
    packed = block[start:start + length * dtype.itemsize].view(dtype)
    names = [f"{kind}{i}" for i in range(1, len(sizes)) for kind in ("W", "b")]
    for name, view in zip(names, packed_views(packed, shapes, offsets)):
        np.copyto(view, net.params[name])
        net.params[name] = view
    return packed


class Workspace:
    """Buffers of one structure and batch size: outputs, masks and gradients per layer,
    parameter gradients, labels, all carved from one block of memory (so whether an
    input aliases any of them is one bounds check).

    The parameter gradients are views of ``packed``, one contiguous, cache-line aligned
    region laid out by :func:`gradient_layout` (zero padding between them, ``extra``
    slots at its end): a data-parallel step all-reduces the whole gradient as this one
    buffer, with no packing copy. ``packed``: an array to use as that region when it
    fits (a row of a data-parallel trainer's shared-memory window), else None."""

    def __init__(self, key, packed=None):
        n, sizes, dtype, activation = key
        self.key = key
        relu = _ACTIVATION_NAMES[activation] == "relu"
        shapes = [(n, m) for m in sizes[1:]]
        grad_shapes, grad_offsets, grad_length = gradient_layout(sizes, dtype)
        outside = _fits(packed, grad_length, dtype)
        plan = ([(s, dtype) for s in shapes] * 2
                + ([] if outside else [((grad_length,), dtype)])
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
        if outside:
            views.insert(2 * L, packed)
        self._outside = outside
        self.packed = views[2 * L]
        self.packed.fill(0)   # the padding stays zero: the kernel writes only the gradients
        grads = packed_views(self.packed, grad_shapes, grad_offsets)
        self.dWs, self.dbs = grads[0::2], grads[1::2]
        self.extra = self.packed[grad_length - _ALIGN // np.dtype(dtype).itemsize:]
        self.labels = views[2 * L + 1]   # the step's labels, kept for lastLayer.t
        self.masks = (views[2 * L + 2:] if relu else [None] * (L - 1)) + [None]
        self.mask_bytes = [None if m is None else m.view(np.uint8) for m in self.masks]
        self.grads = []   # (key, buffer) in params order: W1, b1, W2, ...
        for i, (dW, db) in enumerate(zip(self.dWs, self.dbs), start=1):
            self.grads += [(f"W{i}", dW), (f"b{i}", db)]

    def holds(self, a):
        """True when array ``a`` may share memory with these buffers."""
        return (_backend.mlp_overlaps(self.block, a)
                or (self._outside and _backend.mlp_overlaps(self.packed, a)))


def _fits(packed, length, dtype):
    """True when ``packed`` can be a workspace's gradient region of ``length`` elements."""
    return (isinstance(packed, np.ndarray) and packed.dtype == dtype
            and packed.shape == (length,) and packed.flags.c_contiguous
            and packed.flags.writeable and packed.ctypes.data % _ALIGN == 0)


class FusedMLP:
    """The compiled whole-network path of one network: plans, buffers, the fused calls.

    Holds no reference to its network (the network passes itself in), so
    no cycle; copies and pickles of a network start with no buffers.
    """

    __slots__ = ("workspace", "gradient_buffer", "_names", "__weakref__")

    def __init__(self):
        self.workspace = None   # Workspace of the last fused gradient call
        self.gradient_buffer = None   # a packed region new workspaces use when it fits
        self._names = None      # the layer names a fusable network of some depth has

    def __reduce__(self):
        return FusedMLP, ()

    def plan(self, net, writeable=False):
        """A :class:`Plan` for ``net`` as it is now, or None (then the layer path runs).

        ``writeable``: the weights must be writeable (a fused SGD update writes them).
        """
        if not _backend.USE_BLAS:
            return None
        found = _backend.mlp_fusable(net, _LAYER_CLASSES, writeable)
        if found is None:
            return None
        names = self._names   # the only layer list the kernel runs (cached per depth)
        if names is None or len(names) != 2 * len(found[0]) - 1:
            names = self._names = net._layer_names(len(found[0]))
        return Plan(*found) if list(net.layers) == names else None

    def predict_ready(self, net, x):
        """Scores of ``x`` in one compiled call when ``net`` and ``x`` are ready for the fused
        kernel as they are (the usual case), else None: then :meth:`plan` and :meth:`predict`
        on the checked ``x``. The layer names come from the last :meth:`plan` (the kernel
        compares them with ``net.layers``), so the first call of a network takes the long way."""
        if self._names is None or not _backend.USE_BLAS:
            return None
        return _backend.mlp_predict_ready(net, x, _LAYER_CLASSES, self._names)

    def predict(self, plan, x):
        """Scores of the checked batch ``x`` (new arrays: predict is safe from many threads)."""
        x = _own(x, plan, 0.0)
        hs = [np.empty((x.shape[0], m), plan.dtype) for m in plan.sizes[1:]]
        _backend.mlp_predict(x, plan.Ws, plan.bs, hs, plan.activation)
        return hs[-1]

    def gradients(self):
        """``W1, b1, ...`` of the last :meth:`run`: the workspace's buffers, not copies."""
        return dict(self.workspace.grads)

    def count_correct(self, plan, x, labels):
        """How many rows of the checked batch ``x`` score highest at their label (``labels``
        intp, in range); new buffers, as :meth:`predict`."""
        x = _own(x, plan, 0.0)
        hs = [np.empty((x.shape[0], m), plan.dtype) for m in plan.sizes[1:]]
        return _backend.mlp_accuracy(x, labels, plan.Ws, plan.bs, hs, plan.activation)

    def loss(self, net, plan, x, t):
        """The loss of the batch (weight decay ``weight_decay_lambda`` included) by one
        compiled forward pass in the workspace; the layers' forward attributes are left as
        the layer-by-layer ``loss`` leaves them (``dW``, ``db`` untouched)."""
        decay = net._decay()
        x, labels, onehot, t, _, ws = self._batch(net, plan, x, t, None, 0.0, gradients=False)
        loss, sum_sq = _backend.mlp_loss(x, labels, onehot, plan.Ws, plan.bs, ws.hs,
                                         ws.mask_bytes, ws.ds, plan.activation, plan.output,
                                         decay != 0)
        if not math.isfinite(loss) and not np.isfinite(x).all():
            raise ValueError("x contains NaN or infinity")
        _record(net, x, t, ws, loss, None)
        return loss + 0.5 * decay * sum_sq

    def run(self, net, plan, x, t, sample_weight, weight_decay, sgd_lr=0.0):
        """Check the batch, run the compiled pass, record the book's attributes; return the
        loss (weight decay included). ``sgd_lr > 0`` also applies ``p -= sgd_lr * grad`` to
        every weight and bias inside the backward pass (no gradient is stored)."""
        decay = net._decay(weight_decay)
        x, labels, onehot, t, sample_weight, ws = self._batch(net, plan, x, t, sample_weight,
                                                              sgd_lr)
        loss, sum_sq = _backend.mlp_gradient(x, labels, onehot, sample_weight, plan.Ws, plan.bs,
                                             ws.hs, ws.mask_bytes, ws.ds, ws.dWs, ws.dbs,
                                             plan.activation, plan.output, decay, sgd_lr)
        if not math.isfinite(loss) and not np.isfinite(x).all():
            raise ValueError("x contains NaN or infinity")
        total = loss + 0.5 * decay * sum_sq
        _record(net, x, t, ws, loss, total)
        return total

    def _batch(self, net, plan, x, t, sample_weight, sgd_lr, gradients=True):
        """The checked batch ``(x, labels, onehot, t, sample_weight, workspace)`` of one
        fused call, in arrays the kernel may read. ``gradients``: the call writes parameter
        gradients, and the workspace becomes the kept one; else (``loss``) the kept one
        serves when it fits, or new buffers, kept only when there were none (and no shared
        gradient region), so a loss of another batch size neither drops the kept buffers
        nor writes the gradients they hold."""
        # NaN/inf in x is caught after the pass (it always makes the loss non-finite),
        # which saves a full scan of x per step; params are never touched either way.
        x = net._check_x(x, finite=False)
        if sample_weight is not None:
            sample_weight = as_float(sample_weight, "sample_weight", dtype=plan.dtype, ndim=1,
                                     finite=True)
            if sample_weight.shape[0] != x.shape[0] or (sample_weight < 0).any():
                raise ValueError(f"sample_weight must hold {x.shape[0]} non-negative weights, "
                                 f"got shape {sample_weight.shape}")
        key = plan.key(x.shape[0])
        ws = self.workspace
        keep = gradients or (ws is None and self.gradient_buffer is None)
        if ws is None or ws.key != key or ws.holds(x) or ws.holds(t) or ws.holds(sample_weight):
            # new buffers; also when an input is one of the old ones (a layer's cached
            # activation, a returned gradient passed back in): the call then neither
            # reads a buffer it is writing nor overwrites an array it was given
            packed = self.gradient_buffer if gradients else None
            if packed is not None and any(_backend.mlp_overlaps(packed, a)
                                          for a in (x, t, sample_weight)):
                packed = None   # an input lies in it: this workspace gets its own
            ws = Workspace(key, packed)
        n_classes = plan.sizes[-1]
        labels = onehot = None
        if plan.output != _SOFTMAX_CE:   # float targets
            onehot = net._check_t(t, x.shape[0])
        elif not _backend.copy_labels(t, ws.labels, n_classes):   # the usual case, in C
            labels, onehot = check_targets(t, x.shape[0], n_classes, plan.dtype, copy=False)
            if labels is not None:   # our own copy: the caller may change theirs after the call
                np.copyto(ws.labels, labels)
        if onehot is None:
            labels = t = ws.labels
        else:
            t = onehot = _own(onehot, plan, sgd_lr)
        x = _own(x, plan, sgd_lr)
        if sample_weight is not None:
            sample_weight = _own(sample_weight, plan, sgd_lr)
        if keep:
            self.workspace = ws
        return x, labels, onehot, t, sample_weight, ws


def _own(a, plan, sgd_lr):
    """``a`` as an aligned C-contiguous array, copied when a fused update would change
    it while the kernel reads it (``a`` shares memory with a weight or bias)."""
    if (not (a.flags.c_contiguous and a.flags.aligned)
            or (sgd_lr and any(_backend.mlp_overlaps(p, a) for p in plan.Ws + plan.bs))):
        return np.array(a, order="C")
    return a


def _record(net, x, t, ws, data_loss, loss):
    """Leave the book's layer attributes as the layer-by-layer path would: after a
    gradient (``loss`` given: also ``dW``, ``db`` and ``net.last_loss``), or after a
    forward pass only (``loss`` None)."""
    layer_list = list(net.layers.values())
    inputs = [x] + ws.hs[:-1]
    for affine, a, dW, db in zip(layer_list[::2], inputs, ws.dWs, ws.dbs):
        affine.x, affine.original_x_shape = a, a.shape
        if loss is not None:
            affine.dW, affine.db = dW, db
    for layer, h, mask in zip(layer_list[1::2], ws.hs, ws.masks):
        if net.activation == "relu":
            layer.mask = mask
            layer._dtype = x.dtype   # what Relu.forward records beside its mask, for backward
        elif net.activation == "identity":
            layer.shape, layer.dtype = h.shape, h.dtype.type
        else:   # sigmoid, tanh: backward reads the output
            layer.out = h
    net.last_layer.y, net.last_layer.t, net.last_layer.loss = ws.hs[-1], t, data_loss
    if loss is not None:
        net.last_loss = loss
