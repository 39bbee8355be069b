"""The fused whole-network path of ``MultiLayerNetExtend``: dropout and batch normalisation
inside the one compiled call of ``fastmlp._kernels.mlp`` (forward, backward, SGD step).

A :class:`FusedExtend` belongs to one network and keeps what outlives a call: the
workspace for the current structure and batch size (outputs, gradients, masks, batch
statistics, all carved from one block, so a training step allocates nothing after the
first) and the running statistics the batch-norm layers hold, which the kernel
updates in place. Every call re-derives the network from its ``layers``: the fused
kernel runs only when they are exactly the book's sequence for the network's public
attributes (``Affine{i}, [BatchNorm{i}], Activation_function{i}, [Dropout{i}], ...``,
of the compiled classes, arrays of the network's dtype); otherwise ``plan`` gives
None and the network runs its layers one by one.

After a fused call the layers' book attributes point at the step's buffers, as the
layer path would leave them (``Affine.x/dW/db``, ``Relu.mask``, ``BatchNormalization
.xc/xn/std/dgamma/dbeta/running_mean/running_var``, ``Dropout.mask``, ``last_layer``).
A ``Sigmoid`` before a ``Dropout`` records the dropped output (zero where dropped).
"""
import math

import numpy as np

from . import _backend, layers
from ._regularization import BN_EPS, check_momentum, check_ratio
from ._streams import as_stream, draw_key, rewind, rewindable, saved_states
from ._validation import as_float, check_targets

__all__ = ["FusedExtend"]

_CORE = (layers.Affine, (layers.Relu, layers.Sigmoid, layers.Tanh, layers.Identity),
         (layers.SoftmaxWithLoss, layers.MSELoss, layers.SigmoidWithLoss,
          layers.PoissonLoss))   # as _fused's: activations and outputs in code order
_ALIGN = 64


class Plan:
    __slots__ = ("Ws", "bs", "sizes", "activation", "output", "dtype", "bn", "drop",
                 "param_names")

    def __init__(self, found, bn, drop, param_names):
        self.Ws, self.bs, self.sizes, self.activation, self.output = found
        self.dtype = self.Ws[0].dtype.type
        self.bn, self.drop, self.param_names = bn, drop, param_names

    def has_mode_layers(self):
        """True when a batch-norm or dropout layer runs in the kernel (entries are layers
        or None)."""
        return any(self.bn) or any(self.drop)

    def params_held(self, params):
        """True when ``params`` holds exactly the arrays the fused SGD step updates (``W{i}``,
        ``b{i}``, and each batch norm's ``gamma{i}``, ``beta{i}``), checked in C."""
        return _backend.mlp_params_hold(params, self.param_names, self.Ws, self.bs, self.bn)

    def key(self, n):
        return (n, self.sizes, self.dtype, self.activation,
                tuple(b is not None for b in self.bn), tuple(d is not None for d in self.drop))


def _ready(a, dtype, shape, writeable):
    if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.shape == shape):
        return False
    flags = a.flags
    return flags.c_contiguous and flags.aligned and (flags.writeable or not writeable)


class Workspace:
    """Buffers of one structure and batch size, carved from one block."""

    def __init__(self, key):
        n, sizes, dtype, activation, has_bn, has_drop = key
        self.key = key
        hidden = sizes[1:-1]
        plan = {"hs": [((n, m), dtype) for m in sizes[1:]],
                "ds": [((n, m), dtype) for m in sizes[1:]],
                "dWs": [((k, m), dtype) for k, m in zip(sizes[:-1], sizes[1:])],
                "dbs": [((m,), dtype) for m in sizes[1:]],
                "labels": [((n,), np.intp)],
                "masks": [((n, m), np.uint8) for m in hidden] if activation == 0 else [],
                "dmasks": [((n, m), np.uint8) for m, d in zip(hidden, has_drop) if d]}
        for name, shape_of in (("xc", lambda m: (n, m)), ("xn", lambda m: (n, m)),
                               ("std", lambda m: (m,)), ("mean", lambda m: (m,)),
                               ("work", lambda m: (3 * m,)), ("dgamma", lambda m: (m,)),
                               ("dbeta", lambda m: (m,))):
            plan[name] = [(shape_of(m), dtype) for m, b in zip(hidden, has_bn) if b]
        sizes_bytes = {k: [-(-math.prod(s) * np.dtype(dt).itemsize // _ALIGN) * _ALIGN
                           for s, dt in v] for k, v in plan.items()}
        self.block = np.empty(sum(map(sum, sizes_bytes.values())) + _ALIGN, np.uint8)
        offset = -self.block.ctypes.data % _ALIGN
        for name, entries in plan.items():
            views = []
            for (shape, dt), size in zip(entries, sizes_bytes[name]):
                count = math.prod(shape) * np.dtype(dt).itemsize
                views.append(self.block[offset:offset + count].view(dt).reshape(shape))
                offset += size
            setattr(self, name, views)
        self.labels = self.labels[0]
        masks = iter(self.masks)
        self.masks = [next(masks) if activation == 0 else None for _ in hidden] + [None]
        # the layers' ``mask`` attributes: made once, not per step
        self.mask_views = [None if m is None else m.view(np.bool_) for m in self.masks]
        self.dmask_views = [m.view(np.bool_) for m in self.dmasks]
        self.bn_slots = _slots(has_bn)
        self.drop_slots = _slots(has_drop)

    def holds(self, a):
        return _backend.mlp_overlaps(self.block, a)


def _slots(flags):
    """Per hidden layer, its index among the layers that have the feature (or None)."""
    out, j = [], 0
    for f in flags:
        out.append(j if f else None)
        j += f
    return out


class FusedExtend:
    """The compiled whole-network path of one ``MultiLayerNetExtend``."""

    __slots__ = ("workspace", "running", "structure", "recording")

    def __init__(self):
        self.workspace = None
        self.recording = None   # the Recording of the last training call
        self.running = {}   # hidden layer index -> (mean, var): arrays the kernel updates
        self.structure = None   # (key, what _structure returns for it)

    def __reduce__(self):
        return FusedExtend, ()

    def plan(self, net, writeable=False):
        """A :class:`Plan` for ``net`` as it is now, or None (the layer path then runs)."""
        if not _backend.USE_BLAS:
            return None
        names, kinds, param_names = self._structure(net)
        found = _backend.mlp_fusable_extend(net, names, kinds, _CORE, layers.BatchNormalization,
                                            layers.Dropout, writeable)
        if found is None:
            return None
        return Plan(found[:5], found[5], found[6], param_names)

    def _structure(self, net):
        """(the layer names the kernel runs for ``net``'s public attributes, each one's kind
        ('bn', 'drop', 'affine', 'core'), the ``params`` keys of the fused SGD step); made
        once per depth, batch norm and dropout."""
        key = (net.hidden_layer_num, net.use_batchnorm, net.use_dropout)
        if self.structure is None or self.structure[0] != key:
            depth = net.hidden_layer_num + 1   # Affine layers
            names = net._layer_names(depth)
            kinds = ["bn" if name.startswith("BatchNorm") else
                     "drop" if name.startswith("Dropout") else
                     "affine" if name.startswith("Affine") else "core" for name in names]
            param_names = [f"{p}{i}" for i in range(1, depth + 1) for p in ("W", "b")]
            param_names += [f"{p}{i}" for i in range(1, depth) if f"BatchNorm{i}" in names
                            for p in ("gamma", "beta")]
            self.structure = (key, (names, kinds, param_names))
        return self.structure[1]

    def _running(self, i, layer, dtype, m):
        """The running statistics of hidden layer i as arrays this path owns (the layer then
        holds them): the layer's values copied in when it holds others."""
        mean, var = layer.running_mean, layer.running_var
        owned = self.running.get(i)
        if owned is not None and owned[0] is mean and owned[1] is var and _ready(
                mean, dtype, (m,), True) and _ready(var, dtype, (m,), True):
            return owned
        checked = [np.zeros(m, dtype) if v is None else
                   np.array(as_float(v, f"BatchNormalization.{what}", dtype=dtype, ndim=1),
                            order="C", copy=True)
                   for v, what in ((mean, "running_mean"), (var, "running_var"))]
        for v, what in zip(checked, ("running_mean", "running_var")):
            if v.shape != (m,):
                raise ValueError(f"BatchNormalization.{what} must have shape {(m,)}, "
                                 f"got {v.shape}")
        self.running[i] = tuple(checked)
        layer.running_mean, layer.running_var = checked
        return self.running[i]

    def predict(self, net, plan, x):
        """Inference-mode scores of the checked batch ``x`` (new arrays)."""
        x = _own(x)
        dtype = plan.dtype
        hs = [np.empty((x.shape[0], m), dtype) for m in plan.sizes[1:]]
        bn, drop = [], []
        for i, (b, d) in enumerate(zip(plan.bn, plan.drop)):
            m = plan.sizes[i + 1]
            if b is None:
                bn.append(None)
            else:
                mean, var = self._running(i, b, dtype, m)
                bn.append((b.gamma, b.beta, mean, var, np.empty(3 * m, dtype), BN_EPS))
            drop.append(None if d is None else
                        (check_ratio(d.dropout_ratio, "Dropout.dropout_ratio"),))
        _backend.mlp_predict(x, plan.Ws, plan.bs, hs, plan.activation, bn, drop)
        return hs[-1]

    def gradients(self, plan):
        ws, out = self.workspace, {}
        for i in range(1, len(ws.dWs) + 1):
            out[f"W{i}"], out[f"b{i}"] = ws.dWs[i - 1], ws.dbs[i - 1]
            slot = ws.bn_slots[i - 1] if i <= len(ws.bn_slots) else None
            if slot is not None:
                out[f"gamma{i}"], out[f"beta{i}"] = ws.dgamma[slot], ws.dbeta[slot]
        return out

    def run(self, net, plan, x, t, sample_weight, weight_decay, sgd_lr=0.0):
        """Check the batch, run forward + backward in training mode (with ``sgd_lr`` > 0 the
        SGD step on every W, b, gamma, beta), record the layers' attributes; return the loss."""
        streams = [None if d is None else as_stream(d.rng, "Dropout.rng") for d in plan.drop]
        # A failed call must not have drawn from the masks' streams: Generators are
        # rewound after a pass that found NaN/inf in x (the kernel checks x in O(n));
        # numpy's global state and a RandomState cost more to save than checking x first.
        x = net._check_x(x, finite=not rewindable(streams))
        decay = net._decay(weight_decay)
        dtype = plan.dtype
        momenta = [None if b is None else check_momentum(b.momentum, "BatchNormalization.momentum")
                   for b in plan.bn]
        ratios = [None if d is None else check_ratio(d.dropout_ratio, "Dropout.dropout_ratio")
                  for d in plan.drop]
        if sample_weight is not None:
            sample_weight = as_float(sample_weight, "sample_weight", dtype=dtype, ndim=1,
                                     finite=True)
            if sample_weight.shape[0] != x.shape[0] or (sample_weight < 0).any():
                raise ValueError(f"sample_weight must hold {x.shape[0]} non-negative weights, "
                                 f"got shape {sample_weight.shape}")
        key = plan.key(x.shape[0])
        ws = self.workspace
        if ws is None or ws.key != key or ws.holds(x) or ws.holds(t) or ws.holds(sample_weight):
            ws = Workspace(key)
        n_classes = plan.sizes[-1]
        labels = onehot = None
        if plan.output != _backend.OUTPUT_CODES["cross_entropy"]:   # float targets
            onehot = net._check_t(t, x.shape[0])
        elif not _backend.copy_labels(t, ws.labels, n_classes):
            labels, onehot = check_targets(t, x.shape[0], n_classes, dtype, copy=False)
            if labels is not None:
                np.copyto(ws.labels, labels)
        if onehot is None:
            labels = t = ws.labels
        else:
            t = onehot = _own(onehot)
        x = _own(x)
        if sample_weight is not None:
            sample_weight = _own(sample_weight)
        bn_args = []
        for i, b in enumerate(plan.bn):
            slot = ws.bn_slots[i]
            if b is None:
                bn_args.append(None)
                continue
            mean, var = self._running(i, b, dtype, plan.sizes[i + 1])
            bn_args.append((b.gamma, b.beta, ws.xc[slot], ws.xn[slot], ws.std[slot],
                            ws.mean[slot], mean, var, ws.dgamma[slot], ws.dbeta[slot],
                            ws.work[slot], momenta[i], BN_EPS))
        drop_args, saved_streams = [], saved_states(streams)
        for i, d in enumerate(plan.drop):   # keys drawn in forward order, as the layers do
            if d is None:
                drop_args.append(None)
                continue
            d.rng = streams[i]   # an int becomes the layer's own stream once, not every pass
            drop_args.append((ws.dmasks[ws.drop_slots[i]], draw_key(streams[i]), ratios[i]))
        self.workspace = ws
        if sgd_lr and _reads_a_parameter(plan, (x, t, sample_weight), ws.labels):
            x, t = np.array(x), np.array(t)
        loss, sum_sq = _backend.mlp_gradient(x, labels, onehot, sample_weight, plan.Ws, plan.bs,
                                             ws.hs, ws.masks, ws.ds, ws.dWs, ws.dbs,
                                             plan.activation, plan.output, decay, sgd_lr,
                                             bn_args, drop_args)
        if not math.isfinite(loss) and not np.isfinite(x).all():
            rewind(saved_streams)   # the kernel stopped before any statistic or mask
            raise ValueError("x contains NaN or infinity")
        total = loss + 0.5 * decay * sum_sq
        items, sgd, rec = tuple(net.layers.values()), sgd_lr > 0, self.recording
        if rec is None or rec.ws is not ws or rec.sgd != sgd or rec.items != items:
            rec = self.recording = Recording(ws, items, plan, sgd)
        rec.apply(net, x, t, loss, total)
        return total


def _reads_a_parameter(plan, arrays, own):
    """True when one of ``arrays`` (None entries skipped; ``own``, the workspace's label
    buffer, never is) may share memory with a weight or bias the fused step updates."""
    return any(_backend.mlp_overlaps(p, a) for a in arrays if a is not None and a is not own
               for p in plan.Ws + plan.bs)


def _own(a):
    """``a`` as an aligned C-contiguous array (a copy only when it is not)."""
    if not (a.flags.c_contiguous and a.flags.aligned):
        return np.array(a, order="C")
    return a


def _attribute_updates(items, plan, ws, sgd):
    """Per layer of ``items`` (the network's layers, in order), the attributes a fused
    training call on ``ws`` leaves as the layer-by-layer path would, but the first Affine's
    input: [(layer, {name: value})]. ``sgd``: the fused SGD step stored no dW, dgamma, dbeta."""
    updates, inputs, affine_i = [], [None] + ws.hs[:-1], -1
    for layer in items:
        kind = type(layer)
        if kind is layers.Affine:
            affine_i += 1
            attrs = {"dW": None if sgd else ws.dWs[affine_i], "db": ws.dbs[affine_i]}
            if affine_i:
                attrs.update(x=inputs[affine_i], original_x_shape=inputs[affine_i].shape)
        elif kind is layers.BatchNormalization:
            slot = ws.bn_slots[affine_i]
            attrs = {"input_shape": ws.xn[slot].shape, "batch_size": ws.xn[slot].shape[0],
                     "xc": ws.xc[slot], "xn": ws.xn[slot], "std": ws.std[slot],
                     "dgamma": None if sgd else ws.dgamma[slot],
                     "dbeta": None if sgd else ws.dbeta[slot]}
        elif kind is layers.Dropout:
            attrs = {"mask": ws.dmask_views[ws.drop_slots[affine_i]], "_dtype": plan.dtype}
        elif kind is layers.Relu:   # with what Relu.forward records beside its mask
            attrs = {"mask": ws.mask_views[affine_i], "_dtype": plan.dtype}
        elif kind is layers.Identity:
            attrs = {"shape": ws.hs[affine_i].shape, "dtype": plan.dtype}
        else:   # sigmoid, tanh: backward reads the output
            attrs = {"out": ws.hs[affine_i]}
        updates.append((layer, attrs))
    return updates


class Recording:
    """What a fused training call leaves on the layers, made once per workspace and layer
    list and applied as one ``__dict__`` update per layer (attribute by attribute, this
    bookkeeping cost about 3% of a 784-256-256-10 @256 step)."""

    __slots__ = ("ws", "items", "sgd", "updates")

    def __init__(self, ws, items, plan, sgd):
        self.ws, self.items, self.sgd = ws, items, sgd
        self.updates = _attribute_updates(items, plan, ws, sgd)

    def apply(self, net, x, t, data_loss, loss):
        """Leave the book's layer attributes as the layer-by-layer path would."""
        for layer, attrs in self.updates:
            layer.__dict__.update(attrs)
        first = self.items[0]
        first.x, first.original_x_shape = x, x.shape
        net.last_layer.y, net.last_layer.t, net.last_layer.loss = self.ws.hs[-1], t, data_loss
        net.last_loss = loss
