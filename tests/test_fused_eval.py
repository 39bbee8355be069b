"""``loss`` and ``accuracy`` in one compiled call (issue 13), against the layer path.

The layer-by-layer path of the same network is the oracle (``fastmlp.reference``'s
numpy network with the same weights, and the compiled network forced onto its layer
path). Bounds from ../shared/TESTING.md: the loss is a reduction, held to
``rtol 1e-12`` (float64) / ``1e-5`` (float32) of the reference's value plus the
forward-error bound of the logits it is computed from; accuracy counts argmax hits
of the very logits ``predict`` returns, so it is exact.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp import reference as R

U = {np.float32: float(np.finfo(np.float32).eps) / 2, np.float64: float(np.finfo(np.float64).eps) / 2}
CASES = [dict(activation="relu"), dict(activation="sigmoid"), dict(activation="tanh"),
         dict(activation="identity"),
         dict(activation="relu", weight_decay_lambda=0.1),
         dict(activation="sigmoid", weight_decay_lambda=0.05, loss="mse")]


def _pair(dtype, sizes, **kw):
    net = fastmlp.MultiLayerNet(*sizes, dtype=dtype, seed=3, **kw)
    ref = R.MultiLayerNet(*sizes, dtype=dtype, seed=3, **kw)
    return net, ref


def _batch(rng, n, sizes, kw, dtype, onehot=False):
    x = rng.standard_normal((n, sizes[0])).astype(dtype)
    if kw.get("loss") == "mse":
        return x, rng.standard_normal((n, sizes[2])).astype(dtype)
    t = rng.integers(0, sizes[2], n)
    return x, (np.eye(sizes[2])[t] if onehot else t)


def _loss_bound(ref_loss, x, ref, dtype):
    """rtol of a loss scalar plus the forward error of the logits through the layers."""
    K = max([x.shape[1], *ref.hidden_size_list])
    scale = np.abs(x).max() * max(np.abs(w).sum(axis=0).max() for w in
                                  (ref.params[k] for k in ref.params if k[0] == "W"))
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    return rtol * abs(ref_loss) + 4 * K * U[dtype] * (1 + scale) * (1 + len(ref.hidden_size_list))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kw", CASES, ids=["relu", "sigmoid", "tanh", "identity", "relu-decay",
                                       "sigmoid-mse"])
@pytest.mark.parametrize("n", [1, 3, 17, 100])
def test_fused_loss_and_accuracy_match_the_layer_path(dtype, kw, n):
    sizes = (9, [7, 6], 4)
    rng = np.random.default_rng(n)
    net, ref = _pair(dtype, sizes, **kw)
    assert net._fused.plan(net) is not None
    for onehot in (False, True):
        x, t = _batch(rng, n, sizes, kw, dtype, onehot)
        got, want = net.loss(x, t), ref.loss(x, t)
        assert isinstance(got, float)
        assert abs(got - want) <= _loss_bound(want, x, ref, dtype)
        if kw.get("loss") != "mse":
            scores = net.predict(x)
            hits = np.count_nonzero(scores.argmax(axis=1) == np.asarray(t).reshape(n, -1).argmax(1)
                                    if onehot else scores.argmax(axis=1) == t)
            assert net.accuracy(x, t) == hits / n


@settings(max_examples=30, deadline=None)
@given(widths=st.lists(st.sampled_from([1, 3, 16, 17, 33, 100]), min_size=0, max_size=3),
       n=st.sampled_from([1, 2, 5, 64]), c=st.sampled_from([1, 2, 10]),
       dtype=st.sampled_from([np.float32, np.float64]),
       activation=st.sampled_from(["relu", "sigmoid", "tanh", "identity"]),
       decay=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 2**16))
def test_fused_loss_at_odd_sizes(widths, n, c, dtype, activation, decay, seed):
    sizes = (5, widths, c)
    net, ref = _pair(dtype, sizes, activation=activation, weight_decay_lambda=decay)
    rng = np.random.default_rng(seed)
    x, t = rng.standard_normal((n, 5)).astype(dtype), rng.integers(0, c, n)
    want = ref.loss(x, t)
    assert abs(net.loss(x, t) - want) <= _loss_bound(want, x, ref, dtype)
    assert net.accuracy(x, t) == np.count_nonzero(net.predict(x).argmax(axis=1) == t) / n


def test_loss_leaves_the_books_attributes_for_a_hand_written_backward():
    """The book's gradient is ``loss`` then ``backward`` through the layers: after the
    fused ``loss`` that still gives the network's gradient."""
    rng = np.random.default_rng(0)
    net = fastmlp.MultiLayerNet(9, [7, 6], 4, weight_decay_lambda=0.0, seed=1)
    x, t = rng.standard_normal((13, 9)), rng.integers(0, 4, 13)
    grads = {k: v.copy() for k, v in net.gradient(x, t).items()}
    x2 = rng.standard_normal((13, 9))
    net.loss(x2, t)
    assert net.layers["Affine1"].x is not None and net.lastLayer.t is not None
    np.testing.assert_array_equal(net.layers["Affine1"].x, x2)
    dout = net.lastLayer.backward(1)
    for layer in reversed(list(net.layers.values())):
        dout = layer.backward(dout)
    by_hand = {}
    for i in (1, 2, 3):
        affine = net.layers[f"Affine{i}"]
        by_hand[f"W{i}"], by_hand[f"b{i}"] = affine.dW.copy(), affine.db.copy()
    fused = net.gradient(x2, t)
    for key, value in fused.items():   # the same sums in another order: a few u
        np.testing.assert_allclose(by_hand[key], value, rtol=1e-12,
                                   atol=1e-14 * np.abs(value).max())
    assert not np.allclose(by_hand["W1"], grads["W1"])   # a different batch than before


def test_loss_keeps_the_last_gradients_and_buffers():
    """``loss`` between ``gradient`` and the update (the book's Trainer) neither
    overwrites the returned gradients nor allocates a new workspace."""
    rng = np.random.default_rng(1)
    net = fastmlp.MultiLayerNet(9, [7], 4, seed=1)
    x, t = rng.standard_normal((16, 9)), rng.integers(0, 4, 16)
    grads = net.gradient(x, t)
    kept = {k: v.copy() for k, v in grads.items()}
    ws = net._fused.workspace
    net.loss(rng.standard_normal((16, 9)), t)
    assert net._fused.workspace is ws
    for k in kept:
        np.testing.assert_array_equal(grads[k], kept[k])
    assert net.layers["Affine1"].dW is grads["W1"]   # loss leaves dW as it was
    net.loss(rng.standard_normal((5, 9)), t[:5])     # another batch size: buffers of its own
    assert net._fused.workspace is ws
    for k in kept:
        np.testing.assert_array_equal(grads[k], kept[k])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_input(dtype):
    """NaN in x: ``loss`` raises naming x (params untouched); ``accuracy`` counts as
    numpy's argmax does on the NaN scores (the first NaN)."""
    rng = np.random.default_rng(2)
    net = fastmlp.MultiLayerNet(5, [4], 3, dtype=dtype, seed=0)
    x, t = rng.standard_normal((6, 5)).astype(dtype), np.array([0, 1, 2, 0, 1, 2])
    x[2, 1] = np.nan
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match="x"):
        net.loss(x, t)
    for k in before:
        np.testing.assert_array_equal(net.params[k], before[k])
    scores = net.predict(x)
    assert np.isnan(scores[2]).all()
    assert net.accuracy(x, t) == np.count_nonzero(scores.argmax(axis=1) == t) / 6


def test_bad_labels_name_t():
    net = fastmlp.MultiLayerNet(5, [4], 3, seed=0)
    x = np.zeros((2, 5))
    for t in ([0, 3], [0, -1], [[0.5, 0.5]]):
        with pytest.raises(ValueError, match="t"):
            net.loss(x, t)
        with pytest.raises(ValueError, match="t"):
            net.accuracy(x, t)
