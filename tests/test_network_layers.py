"""Networks honour their ``layers`` dict (issue 13, item 6).

A reader of the book edits ``net.layers``: replaces a layer, inserts one of their own
class, removes or reorders layers, subclasses a layer, patches a layer's ``forward``.
Whatever it then holds, ``predict``, ``loss``, ``accuracy``, ``gradient`` and
``train_step`` compute the network that is there. The oracle is that network run by
hand here: each layer's ``forward`` in the dict's order, the loss layer, ``backward``
in reverse, the gradients keyed by the layers' names (``Affine{i}`` -> ``W{i}``, as the
book keys them). When the fused kernel still applies (the same structure, other
arrays) the results agree to the TESTING.md reduction bounds; when it does not, the
network runs those very layers and the results are bitwise the hand-run ones.
"""
from collections import OrderedDict

import numpy as np
import pytest

import fastmlp
from fastmlp import layers as L
from fastmlp.optimizers import SGD

U = {np.float32: float(np.finfo(np.float32).eps) / 2, np.float64: float(np.finfo(np.float64).eps) / 2}
SIZES = (6, [6, 6], 3)        # equal widths: reordered Affine layers still chain
DECAY = 0.05


class Leaky(L.Relu):
    """A user's subclass of Relu that computes something else (slope 0.1 below 0)."""

    def forward(self, x):
        self.x = np.asarray(x)
        return np.where(self.x > 0, self.x, 0.1 * self.x)

    def backward(self, dout):
        return np.where(self.x > 0, dout, 0.1 * dout)


class Scale:
    """A user's own layer class: y = 2 x."""

    def forward(self, x):
        return 2 * np.asarray(x)

    def backward(self, dout):
        return 2 * np.asarray(dout)


class DoubleLoss(L.SoftmaxWithLoss):
    """A subclass of the loss layer: twice the cross-entropy."""

    def forward(self, x, t):
        return 2 * super().forward(x, t)

    def backward(self, dout=1):
        return super().backward(2 * dout)


def _rebuild(net, names_and_layers):
    net.layers = OrderedDict(names_and_layers)


def _insert_scale(net):
    items = list(net.layers.items())
    _rebuild(net, items[:1] + [("Scale", Scale())] + items[1:])


def _reorder(net):
    d = net.layers
    _rebuild(net, [("Affine2", d["Affine2"]), ("Activation_function1", d["Activation_function1"]),
                   ("Affine1", d["Affine1"]), ("Activation_function2", d["Activation_function2"]),
                   ("Affine3", d["Affine3"])])


def _moved_to_end(net):
    """The book's order again, reached by ``move_to_end`` from a dict built in another
    order: iterating the OrderedDict gives Affine1 first, the dict underneath Affine2."""
    d = net.layers
    od = OrderedDict((name, d[name]) for name in ("Affine2", "Activation_function1", "Affine1",
                                                  "Activation_function2", "Affine3"))
    for name in ("Activation_function1", "Affine2", "Activation_function2", "Affine3"):
        od.move_to_end(name)
    assert list(od) == list(d) and list(dict.keys(od)) != list(d)
    net.layers = od


def _swap_values(net):
    d = net.layers
    d["Affine1"], d["Affine2"] = d["Affine2"], d["Affine1"]


def _patch_forward(net):
    layer = net.layers["Activation_function1"]
    layer.forward = lambda x: 3 * np.asarray(x)
    layer.backward = lambda dout: 3 * np.asarray(dout)


def _new_affine(net):
    rng = np.random.default_rng(7)
    W = rng.standard_normal((6, 6)).astype(net.dtype)
    net.layers["Affine2"] = L.Affine(W, np.full(6, 0.25, net.dtype))


EDITS = {
    "activation replaced by another class": lambda n: n.layers.__setitem__(
        "Activation_function1", L.Sigmoid()),
    "activation replaced by a subclass": lambda n: n.layers.__setitem__(
        "Activation_function2", Leaky()),
    "own layer class inserted": _insert_scale,
    "activation removed": lambda n: n.layers.pop("Activation_function2"),
    "layers reordered": _reorder,
    "layer objects swapped under their names": _swap_values,
    "forward patched on an instance": _patch_forward,
    "loss layer subclassed": lambda n: setattr(n, "last_layer", DoubleLoss()),
    "Affine replaced by a new one": _new_affine,
    "plain dict instead of OrderedDict": lambda n: setattr(n, "layers", dict(n.layers)),
    "order restored by move_to_end": _moved_to_end,
}
# edits after which the fused kernel still describes the network (it reads the arrays
# the layers hold): the results then agree within rounding, not bitwise
STILL_FUSED = {"layer objects swapped under their names", "Affine replaced by a new one",
               "plain dict instead of OrderedDict", "order restored by move_to_end"}


def _net(dtype, activation="relu"):
    return fastmlp.MultiLayerNet(*SIZES, activation=activation, weight_decay_lambda=DECAY,
                                 dtype=dtype, seed=5)


def _data(dtype, n=11):
    rng = np.random.default_rng(3)
    return rng.standard_normal((n, SIZES[0])).astype(dtype), rng.integers(0, SIZES[2], n)


def _by_hand(net, x, t):
    """The network ``net.layers`` and ``net.last_layer`` describe, run layer by layer:
    (scores, loss with the weight-decay term, gradients keyed by layer name)."""
    y = x
    for layer in net.layers.values():
        y = layer.forward(y)
    scores = np.array(y, copy=True)
    affines = {name: layer for name, layer in net.layers.items() if isinstance(layer, L.Affine)}
    decay_term = 0.5 * DECAY * sum(float(np.sum(a.W ** 2)) for a in affines.values())
    loss = net.last_layer.forward(y, t) + decay_term
    dout = net.last_layer.backward(1)
    for layer in reversed(list(net.layers.values())):
        dout = layer.backward(dout)
    grads = {}
    for name, a in affines.items():
        i = name[len("Affine"):]
        grads[f"W{i}"], grads[f"b{i}"] = a.dW + DECAY * a.W, a.db.copy()
    return scores, loss, grads


def _agree(got, want, dtype, exact, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if exact:
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:   # the fused kernel on the same network: a reduction over <= 11 * 6 terms
        bound = 200 * U[dtype] * (1 + np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=0, atol=bound, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("edit", sorted(EDITS))
def test_methods_run_the_layers_that_are_there(edit, dtype):
    net = _net(dtype)
    x, t = _data(dtype)
    net.gradient(x, t)            # the fused path has run (and holds buffers) before the edit
    EDITS[edit](net)
    assert (net._fused.plan(net) is not None) == (edit in STILL_FUSED)
    exact = edit not in STILL_FUSED
    scores, loss, grads = _by_hand(net, x, t)
    _agree(net.predict(x), scores, dtype, exact, "predict")
    _agree(net.loss(x, t), loss, dtype, exact, "loss")
    assert net.accuracy(x, t) == np.count_nonzero(scores.argmax(axis=1) == t) / len(t)
    got = {k: v.copy() for k, v in net.gradient(x, t).items()}
    assert got.keys() == grads.keys()
    for key in grads:
        _agree(got[key], grads[key], dtype, exact, f"gradient {key}")
    # a training step updates each parameter with its own layer's gradient
    before = {k: np.array(v, copy=True) for k, v in net.params.items()}
    net.train_step(x, t, SGD(lr=0.1))
    for key, value in net.params.items():
        if key in grads:   # a layer that is no longer there gets no gradient
            _agree(value, before[key] - np.asarray(0.1 * grads[key], dtype), dtype, exact,
                   f"step {key}")


def test_a_removed_affine_layer_is_an_error_for_the_optimizer_not_a_silent_step():
    """Without ``Affine3`` the network has no gradient for ``W3``: the book's update
    would fail on it, and the optimizer says so, changing nothing."""
    net = _net(np.float64)
    x, t = _data(np.float64)
    del net.layers["Affine3"]
    net.last_layer = L.SoftmaxWithLoss()
    grads = net.gradient(x, t)
    assert "W3" not in grads and "W1" in grads
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match="W3"):
        SGD(0.1).update(net.params, grads)
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_restoring_the_structure_fuses_again(activation):
    """Put the original layer back: the fused path applies again and agrees with the
    layer path it replaced within rounding."""
    net = _net(np.float64, activation)
    x, t = _data(np.float64)
    original = net.layers["Activation_function1"]
    net.layers["Activation_function1"] = Leaky() if activation == "relu" else L.Relu()
    assert net._fused.plan(net) is None
    net.layers["Activation_function1"] = original
    assert net._fused.plan(net) is not None
    scores, loss, grads = _by_hand(net, x, t)
    _agree(net.predict(x), scores, np.float64, False, "predict")
    _agree(net.loss(x, t), loss, np.float64, False, "loss")
