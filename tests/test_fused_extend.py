"""MultiLayerNetExtend's fused path (dropout and batch norm inside the one compiled call):
against the compiled layer path and the reference, the fused SGD step, its buffers, the
running statistics it owns, and when it must step aside."""
import tracemalloc

import numpy as np
import pytest

import fastmlp
from fastmlp import reference as R

from conftest import TOL, assert_bitwise

CONFIGS = [dict(use_dropout=True), dict(use_batchnorm=True),
           dict(use_dropout=True, use_batchnorm=True, dropout_ration=0.3)]
IDS = ["dropout", "batchnorm", "both"]


class _OtherDropout(fastmlp.layers.Dropout):
    """Not the class the fused kernel knows: the network must run its layers one by one."""


def _data(rng, n=13, d=21, c=6, dtype=np.float64):
    return rng.standard_normal((n, d)).astype(dtype), rng.integers(0, c, n)


def _pair(kw, dtype=np.float64, activation="relu", seed=7, sizes=(21, [17, 9], 6)):
    a = fastmlp.MultiLayerNetExtend(*sizes, activation=activation, dtype=dtype, seed=seed, **kw)
    b = fastmlp.MultiLayerNetExtend(*sizes, activation=activation, dtype=dtype, seed=seed, **kw)
    return a, b


def _force_layer_path(net):
    """Swap every Dropout for an equal instance of a subclass (same stream), or, without
    dropout, add nothing but an unknown layer class: the plan then refuses the network."""
    for name, layer in list(net.layers.items()):
        if type(layer) is fastmlp.layers.Dropout:
            net.layers[name] = _OtherDropout(layer.dropout_ratio, rng=layer.rng)
    if net._fused_extend.plan(net) is not None:   # batch norm only: a subclass of it
        for name, layer in list(net.layers.items()):
            if type(layer) is fastmlp.layers.BatchNormalization:
                cls = type("OtherBN", (fastmlp.layers.BatchNormalization,), {})
                net.layers[name] = cls(layer.gamma, layer.beta)
    assert net._fused_extend.plan(net) is None


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
def test_fused_equals_the_layer_path(rng, dtype, kw, activation):
    fused, layered = _pair(kw, dtype, activation)
    _force_layer_path(layered)
    assert fused._fused_extend.plan(fused) is not None
    for _ in range(3):
        x, t = _data(rng, dtype=dtype)
        g1, g2 = fused.gradient(x, t), layered.gradient(x, t)
        assert list(g1) == list(g2)
        scale = max(float(np.abs(g).max()) for g in g2.values())
        for k in g1:
            np.testing.assert_allclose(g1[k], g2[k], rtol=TOL[dtype]["rtol"],
                                       atol=TOL[dtype]["atol_scale"] * scale)
        for (name, a), b in zip(fused.layers.items(), layered.layers.values()):
            if "Dropout" in name:
                assert_bitwise(a.mask, b.mask)     # the same keys, drawn in the same order
            if "BatchNorm" in name:
                np.testing.assert_allclose(a.running_var, b.running_var, rtol=TOL[dtype]["rtol"])
                np.testing.assert_allclose(a.xn, b.xn, rtol=TOL[dtype]["rtol"],
                                           atol=TOL[dtype]["atol_scale"])
        np.testing.assert_allclose(fused.predict(x), layered.predict(x), rtol=TOL[dtype]["rtol"],
                                   atol=TOL[dtype]["atol_scale"] * 10)


@pytest.mark.parametrize("kw", CONFIGS, ids=IDS)
def test_fused_sgd_step_is_gradient_then_update(rng, dtype, kw):
    a, b = _pair(kw, dtype)
    opt = fastmlp.optimizers.SGD(lr=0.1)
    for _ in range(3):
        x, t = _data(rng, dtype=dtype)
        loss_a = a.fused_sgd_step(x, t, 0.1)
        grads = b.gradient(x, t)
        loss_b = b.last_loss
        opt.update(b.params, grads)
        assert loss_a == pytest.approx(loss_b, rel=TOL[dtype]["loss"] * 10)
        for k in a.params:
            np.testing.assert_allclose(a.params[k], b.params[k], rtol=TOL[dtype]["rtol"],
                                       atol=TOL[dtype]["atol_scale"])
    assert a.layers["Affine1"].dW is None


def test_trainer_takes_the_fused_step():
    (x, t), (xt, tt) = fastmlp.datasets.load_digits()
    net = fastmlp.MultiLayerNetExtend(64, [40, 40], 10, use_dropout=True, use_batchnorm=True,
                                      dropout_ration=0.1, seed=0)
    trainer = fastmlp.Trainer(net, x[:400], t[:400], xt, tt, epochs=4, mini_batch_size=40,
                              optimizer="sgd", optimizer_param={"lr": 0.1}, verbose=False, seed=0)
    final = trainer.train()
    assert net.layers["Affine1"].dW is None   # the fused SGD step ran
    assert final > 0.8


def test_no_arrays_allocated_after_the_first_step(rng):
    net = fastmlp.MultiLayerNetExtend(64, [128, 128], 10, use_dropout=True, use_batchnorm=True,
                                      seed=0)
    x, t = _data(rng, 64, 64, 10)
    grads = net.gradient(x, t)
    ws = net._fused_extend.workspace
    net.fused_sgd_step(x, t, 0.01)
    tracemalloc.start()
    for _ in range(5):
        net.gradient(x, t)
        net.fused_sgd_step(x, t, 0.01)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert net._fused_extend.workspace is ws
    assert all(ws.holds(g) for g in grads.values())
    assert peak < 64 * 128 * 8 // 2, peak   # less than half of one hidden buffer


def test_running_statistics_are_owned_and_follow_the_reference(rng):
    kw = dict(use_batchnorm=True)
    net = fastmlp.MultiLayerNetExtend(21, [17, 9], 6, seed=1, **kw)
    ref = R.MultiLayerNetExtend(21, [17, 9], 6, seed=1, **kw)
    given = np.full(17, 0.25)
    net.layers["BatchNorm1"].running_mean = given
    ref.layers["BatchNorm1"].running_mean = given.copy()
    for _ in range(4):
        x, t = _data(rng)
        net.gradient(x, t)
        ref.gradient(x, t)
    assert (given == 0.25).all()   # copied, not written
    for name in ("BatchNorm1", "BatchNorm2"):
        for what in ("running_mean", "running_var"):
            np.testing.assert_allclose(getattr(net.layers[name], what),
                                       getattr(ref.layers[name], what), rtol=1e-12, atol=1e-15)
    x, _ = _data(rng)
    np.testing.assert_allclose(net.predict(x), ref.predict(x), rtol=1e-10, atol=1e-12)


def test_changed_parameters_step_aside(rng):
    """gamma of another dtype, a non-contiguous beta: the layer path runs, results stay right."""
    kw = dict(use_batchnorm=True, use_dropout=True)
    net = fastmlp.MultiLayerNetExtend(21, [17, 9], 6, seed=2, **kw)
    ref = R.MultiLayerNetExtend(21, [17, 9], 6, seed=2, **kw)
    for n in (net, ref):
        n.params["gamma1"] = np.linspace(0.5, 1.5, 17).astype(np.float32)
        n.params["beta2"] = np.linspace(-1, 1, 18)[::2]
    assert net._fused_extend.plan(net) is None
    x, t = _data(rng)
    g, h = net.gradient(x, t), ref.gradient(x, t)
    scale = max(float(np.abs(v).max()) for v in h.values())
    for k in g:   # BatchNorm1 computes in its gamma's float32: float32 tolerances
        np.testing.assert_allclose(g[k], h[k], rtol=TOL[np.float32]["rtol"],
                                   atol=TOL[np.float32]["atol_scale"] * scale)


def test_non_finite_x_changes_nothing(rng):
    net = fastmlp.MultiLayerNetExtend(21, [17], 6, use_batchnorm=True, use_dropout=True, seed=3)
    x, t = _data(rng)
    net.gradient(x, t)
    layer = net.layers["BatchNorm1"]
    mean, var = layer.running_mean.copy(), layer.running_var.copy()
    params = {k: v.copy() for k, v in net.params.items()}
    x[2, 3] = np.nan
    with pytest.raises(ValueError, match="x"):
        net.gradient(x, t)
    with pytest.raises(ValueError, match="x"):
        net.fused_sgd_step(x, t, 0.1)
    assert_bitwise(layer.running_mean, mean)
    assert_bitwise(layer.running_var, var)
    for k, v in params.items():
        assert_bitwise(net.params[k], v)


def test_kernel_checks_what_it_is_handed(rng):
    from fastmlp._kernels import mlp
    x = np.ones((4, 3))
    W1, b1, W2, b2 = np.ones((3, 5)), np.zeros(5), np.ones((5, 2)), np.zeros(2)
    hs = [np.empty((4, 5)), np.empty((4, 2))]
    with pytest.raises(ValueError, match="dropout mask"):
        mlp.mlp_gradient(x, np.zeros(4, np.intp), None, None, [W1, W2], [b1, b2], hs,
                         [np.empty((4, 5), np.uint8), None], [np.empty((4, 5)), np.empty((4, 2))],
                         [np.empty((3, 5)), np.empty((5, 2))], [np.empty(5), np.empty(2)], 0, 0,
                         0.0, 0.0, None, [(np.empty((4, 4), np.uint8), 1, 0.5)])
    with pytest.raises(ValueError, match="gamma"):
        mlp.mlp_predict(x, [W1, W2], [b1, b2], hs, 0,
                        [(np.ones(4), np.zeros(5), np.zeros(5), np.ones(5), np.empty(15), 1e-6)])
    with pytest.raises(ValueError, match="ratio"):
        mlp.mlp_predict(x, [W1, W2], [b1, b2], hs, 0, None, [(1.5,)])


def _extend(seed=3, **kw):
    kw = dict(dict(use_dropout=True, dropout_ration=0.3, use_batchnorm=True), **kw)
    return fastmlp.MultiLayerNetExtend(6, [5, 4], 3, seed=seed, **kw)


def test_a_fused_sgd_step_needs_params_to_hold_the_layers_arrays():
    net = _extend()
    affine = net.layers["Affine1"]
    net.layers["Affine1"] = type(affine)(affine.W.copy(), affine.b.copy())
    assert net.fused_sgd_step(np.ones((4, 6)), [0, 1, 2, 0], 0.1) is None
    net = _extend()
    bn = net.layers["BatchNorm1"]
    net.layers["BatchNorm1"] = type(bn)(bn.gamma.copy(), bn.beta.copy())
    assert net.fused_sgd_step(np.ones((4, 6)), [0, 1, 2, 0], 0.1) is None
    net = _extend()
    net.params["extra"] = np.zeros(3)   # SGD.update would step it too
    assert net.fused_sgd_step(np.ones((4, 6)), [0, 1, 2, 0], 0.1) is None
    net = _extend()
    del net.params["beta2"]   # SGD.update would leave beta2 alone
    assert net.fused_sgd_step(np.ones((4, 6)), [0, 1, 2, 0], 0.1) is None
    net = _extend()   # the same arrays under each other's keys
    dict.__setitem__(net.params, "b1", net.params["b2"])
    dict.__setitem__(net.params, "b2", net.layers["Affine1"].b)
    assert net.fused_sgd_step(np.ones((4, 6)), [0, 1, 2, 0], 0.1) is None
    net = _extend()   # untouched: fused
    assert net.fused_sgd_step(np.ones((4, 6)), [0, 1, 2, 0], 0.1) is not None


@pytest.mark.parametrize("name", ["BatchNorm1", "Dropout2"])
def test_a_layer_with_its_own_forward_is_not_fused(name):
    net = _extend()
    layer = net.layers[name]
    calls = []
    original = layer.forward

    def forward(x, train_flg=True):
        calls.append(1)
        return original(x, train_flg)

    layer.forward = forward
    net.gradient(np.random.default_rng(0).standard_normal((4, 6)), [0, 1, 2, 0])
    assert calls, "the user's forward did not run"


def test_a_non_finite_x_draws_nothing_from_the_masks_stream():
    net = _extend()
    state = net.rng.bit_generator.state
    x = np.ones((4, 6))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match="x"):
        net.gradient(x, [0, 1, 2, 0])
    assert net.rng.bit_generator.state == state


def test_a_refused_batch_leaves_an_int_stream_as_it_was():
    """The int seed becomes the layer's Generator only when a pass draws from it: a batch
    refused before that leaves the public attribute untouched."""
    net = _extend(use_batchnorm=False, dropout_ration=0.5)
    net.layers["Dropout1"].rng = 5
    with pytest.raises(ValueError, match="labels|t "):
        net.fused_sgd_step(np.ones((4, 6)), [0, 1, 9, 0], 0.1)   # label 9 of 3 classes
    assert net.layers["Dropout1"].rng == 5


def test_an_int_stream_is_seeded_once_not_every_pass():
    net = _extend(use_batchnorm=False, dropout_ration=0.5)
    for layer in net.layers.values():
        if type(layer).__name__ == "Dropout":
            layer.rng = 5
    x = np.random.default_rng(0).standard_normal((16, 6))
    net.gradient(x, np.arange(16) % 3)
    first = net.layers["Dropout1"].mask.copy()
    net.gradient(x, np.arange(16) % 3)
    assert not np.array_equal(first, net.layers["Dropout1"].mask)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_refused_fused_step_rewinds_the_masks_streams(bad):
    """The fused step draws its mask keys before the kernel finds NaN/inf in x: the
    Generators are put back, so the next good step draws what it would have drawn."""
    x = np.random.default_rng(0).standard_normal((4, 6))
    bad_x = x.copy()
    bad_x[2, 1] = bad
    a, b = _extend(), _extend()
    states = [layer.rng.bit_generator.state for layer in a.layers.values()
              if type(layer).__name__ == "Dropout"]
    assert states, "the network has no dropout layer"
    with pytest.raises(ValueError, match="x"):
        a.fused_sgd_step(bad_x, [0, 1, 2, 0], 0.1)
    assert [layer.rng.bit_generator.state for layer in a.layers.values()
            if type(layer).__name__ == "Dropout"] == states
    a.fused_sgd_step(x, [0, 1, 2, 0], 0.1)
    b.fused_sgd_step(x, [0, 1, 2, 0], 0.1)
    for key in b.params:
        assert_bitwise(a.params[key], b.params[key])
    assert_bitwise(a.layers["Dropout1"].mask, b.layers["Dropout1"].mask)


@pytest.mark.parametrize("which", ["W1", "b1", "W2"])
def test_a_fused_step_reading_its_own_weights_computes_as_with_a_copy(which):
    """x may be a view of a parameter the step updates in place: the step must read x as
    it was (the fused path then copies it), so it equals the step on a copy of x."""
    a = fastmlp.MultiLayerNetExtend(6, [6, 6], 3, use_batchnorm=True, use_dropout=True, seed=4)
    b = fastmlp.MultiLayerNetExtend(6, [6, 6], 3, use_batchnorm=True, use_dropout=True, seed=4)
    x = a.params[which]
    x = x.reshape(1, 6) if x.ndim == 1 else x
    t = np.arange(len(x)) % 3
    b.fused_sgd_step(x.copy(), t, 0.1)
    a.fused_sgd_step(x, t, 0.1)
    for key in b.params:
        assert_bitwise(a.params[key], b.params[key])


def _edit(net, edit):
    """Change ``net`` as a user might between calls (see test_edits_decide_the_plan)."""
    L = net.layers
    if edit == "reordered":   # Dropout1 moved to the end: not the book's sequence
        L["Dropout1"] = L.pop("Dropout1")
    elif edit == "removed":
        del L["Dropout2"]
    elif edit == "renamed":
        net.layers = {("BN1" if k == "BatchNorm1" else k): v for k, v in L.items()}
    elif edit == "narrow gamma":
        L["BatchNorm2"].gamma = np.ones(8)
    elif edit == "2-d beta":
        L["BatchNorm1"].beta = np.zeros((1, 17))
    elif edit == "bn class swapped":
        L["BatchNorm1"].__class__ = type("OtherBN", (fastmlp.layers.BatchNormalization,), {})
    elif edit == "dropout where batch norm was":
        L["BatchNorm2"] = fastmlp.layers.Dropout(0.5)
    elif edit == "same layers, an OrderedDict":
        from collections import OrderedDict
        net.layers = OrderedDict(L)
    elif edit == "order restored by move_to_end":   # the dict underneath stays reversed
        from collections import OrderedDict
        od = OrderedDict(reversed(list(L.items())))
        for name in L:
            od.move_to_end(name)
        assert list(od) == list(L) and list(dict.keys(od)) != list(L)
        net.layers = od


@pytest.mark.parametrize("edit, fused", [
    ("reordered", False), ("removed", False), ("renamed", False), ("narrow gamma", False),
    ("2-d beta", False), ("bn class swapped", False), ("dropout where batch norm was", False),
    ("same layers, an OrderedDict", True), ("order restored by move_to_end", True)])
def test_edits_decide_the_plan(rng, edit, fused):
    """The compiled structure check (mlp.fusable_extend) runs the kernel only on the book's
    sequence of the exact classes with well-formed gamma and beta; a network it keeps fused
    computes as an unedited twin."""
    kw = dict(use_batchnorm=True, use_dropout=True)
    net = fastmlp.MultiLayerNetExtend(21, [17, 9], 6, seed=2, **kw)
    twin = fastmlp.MultiLayerNetExtend(21, [17, 9], 6, seed=2, **kw)
    _edit(net, edit)
    assert (net._fused_extend.plan(net) is not None) == fused
    if fused:
        x, t = _data(rng)
        g, h = net.gradient(x, t), twin.gradient(x, t)
        for k in h:
            assert_bitwise(g[k], h[k])


def test_read_only_gamma_is_fused_for_gradients_not_for_the_sgd_step():
    net = fastmlp.MultiLayerNetExtend(21, [17, 9], 6, use_batchnorm=True, seed=2)
    net.layers["BatchNorm1"].gamma.flags.writeable = False
    assert net._fused_extend.plan(net) is not None
    assert net._fused_extend.plan(net, writeable=True) is None
