"""Dropout and BatchNormalization (the book's ch. 6 layers): compiled vs the numpy reference,
numerical gradients, masks and their streams, running statistics, bad input."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmlp import _backend, layers as C
from fastmlp._kernels import normalization
from fastmlp.gradient import numerical_gradient
from fastmlp.reference import layers as R
from fastmlp.reference._regularization import dropout_mask

from conftest import (DTYPES, assert_bits_identical, assert_bitwise, assert_within, snapshot,
                      to_layout, unit_roundoff)

SHAPES_ANY = [(1,), (7,), (3, 5), (17, 1), (2, 3, 4), (4, 3, 2, 5), (100, 257)]
SHAPES_BN = [(1, 1), (2, 3), (17, 5), (100, 257), (3, 1023)]


def _bn_bound(ref, n, dtype, scale=0.0):
    """A forward-error bound for results built from length-n column reductions whose
    terms are of size ``scale`` (dx cancels: its terms are far larger than itself)."""
    u = unit_roundoff(dtype)
    ref = np.abs(np.asarray(ref, np.float64))
    return 32 * (n + 2) * u * (ref + ref.max(initial=0) + scale + 1e-30)


def _dx_scale(layer, dout):
    """Size of the terms of the batch-norm dx: |gamma| / std * max|dout| (per column)."""
    return (np.abs(layer.gamma.astype(np.float64)) / layer.std.astype(np.float64)
            * np.abs(np.asarray(dout, np.float64)).max())


# ---------------------------------------------------------------- Dropout

@pytest.mark.parametrize("shape", SHAPES_ANY)
@pytest.mark.parametrize("ratio", [0.0, 0.15, 0.5, 0.9, 1.0])
def test_dropout_matches_reference(rng, dtype, layout, shape, ratio):
    x = to_layout(rng.standard_normal(shape).astype(dtype), layout)
    before = snapshot(x)
    c, r = C.Dropout(ratio, rng=11), R.Dropout(ratio, rng=11)
    out_c, out_r = c.forward(x), r.forward(x)
    assert_bitwise(out_c, out_r)
    assert_bitwise(c.mask, r.mask)
    dout = to_layout(rng.standard_normal(shape).astype(dtype), layout)
    assert_bitwise(c.backward(dout), r.backward(dout))
    assert_bitwise(c.forward(x, train_flg=False), r.forward(x, train_flg=False))
    assert snapshot(x) == before
    if ratio == 0.0:
        assert c.mask.all()
    if ratio == 1.0:
        assert not c.mask.any() and not out_c.any()


@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.8])
def test_dropout_keeps_the_expected_share(dtype, ratio):
    layer = C.Dropout(ratio, rng=3)
    n = 200_000
    layer.forward(np.ones(n, dtype))
    kept = layer.mask.mean()
    sigma = np.sqrt(ratio * (1 - ratio) / n)
    assert abs(kept - (1 - ratio)) < 6 * sigma
    second = layer.mask.copy()
    layer.forward(np.ones(n, dtype))   # a fresh key: a different mask
    assert 0 < np.count_nonzero(second != layer.mask) < n


def test_dropout_forward_is_the_books(rng, dtype):
    """out = x * mask (a product: inf * 0 is NaN, as in the book); test: x * (1 - ratio)."""
    x = rng.standard_normal((50, 40)).astype(dtype)
    x[0, :] = np.inf
    layer = C.Dropout(0.4, rng=0)
    out = layer.forward(x)
    with np.errstate(invalid="ignore"):
        assert_bitwise(out, x * layer.mask)
    assert np.isnan(out[0][~layer.mask[0]]).all()
    assert_bitwise(layer.forward(x, False), x * (1.0 - 0.4))
    dout = rng.standard_normal(x.shape).astype(dtype)
    assert_bitwise(layer.backward(dout), dout * layer.mask)


def test_dropout_streams_repeat():
    x = np.ones((30, 30))
    a, b = C.Dropout(0.5, rng=np.random.default_rng(5)), C.Dropout(0.5, rng=5)
    for _ in range(3):
        a.forward(x)
        b.forward(x)
        assert_bitwise(a.mask, b.mask)
    np.random.seed(42)   # rng=None: numpy's global random state, as the book's np.random.rand
    first = [C.Dropout(0.5).forward(x) for _ in range(2)]
    np.random.seed(42)
    again = [R.Dropout(0.5).forward(x) for _ in range(2)]
    for f, g in zip(first, again):
        assert_bitwise(f, g)
    assert not np.array_equal(first[0], first[1])


def test_dropout_threshold_edges():
    """Keep exactly when u > ratio: ratio equal to an entry's uniform drops it, the next
    double below keeps it (the kernel compares integers, the reference floats)."""
    key, shape = 123456789, (4096,)
    mask_lo = dropout_mask(key, shape, 0.0)
    assert mask_lo.all()
    for i in (0, 17, 4095):
        # recover u_i: the largest ratio that keeps entry i is just below u_i
        lo, hi = 0.0, 1.0
        for _ in range(80):
            mid = (lo + hi) / 2
            if dropout_mask(key, shape, mid)[i]:
                lo = mid
            else:
                hi = mid
        u_i = hi   # the smallest ratio found that drops it: u_i itself
        for ratio in (u_i, np.nextafter(u_i, 0.0), np.nextafter(u_i, 1.0)):
            x = np.ones(shape)
            out, mask = np.empty(shape), np.empty(shape, np.uint8)
            normalization.dropout_forward(x, out, mask, key, ratio, 1)
            assert_bitwise(mask.view(bool), dropout_mask(key, shape, ratio))
        assert not dropout_mask(key, shape, u_i)[i]
        assert dropout_mask(key, shape, np.nextafter(u_i, 0.0))[i]


def test_dropout_kernel_threads_bitwise(parallel_kernels):
    n = 100_003
    x = np.random.default_rng(0).standard_normal(n)
    outs = []
    for threads in (1, 2, 4):
        out, mask = np.empty(n), np.empty(n, np.uint8)
        normalization.dropout_forward(x, out, mask, 99, 0.3, threads)
        outs.append((out, mask))
    for out, mask in outs[1:]:
        assert_bits_identical(out, outs[0][0])
        assert_bitwise(mask, outs[0][1])
    assert_bitwise(outs[0][1].view(bool), dropout_mask(99, (n,), 0.3))


def test_dropout_gradient_is_numerical(rng):
    x = rng.standard_normal((6, 9))
    w = rng.standard_normal((6, 9))

    def f(_):   # the same key every evaluation: the same mask
        return float(np.sum(C.Dropout(0.3, rng=7).forward(x) * w))

    layer = C.Dropout(0.3, rng=7)
    layer.forward(x)
    dx = layer.backward(w)
    num = numerical_gradient(f, x, 1e-5)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- BatchNormalization

def _bn_pair(rng, d, dtype, **kw):
    gamma = (1 + 0.5 * rng.standard_normal(d)).astype(dtype)
    beta = rng.standard_normal(d).astype(dtype)
    return C.BatchNormalization(gamma, beta, **kw), R.BatchNormalization(gamma, beta, **kw)


def _compare_bn(c, r, n, dtype):
    for name in ("running_mean", "running_var", "xc", "xn", "std"):
        assert_within(getattr(c, name), getattr(r, name), _bn_bound(getattr(r, name), n, dtype),
                      name)
    assert c.batch_size == r.batch_size and c.input_shape == r.input_shape


@pytest.mark.parametrize("shape", SHAPES_BN)
def test_batchnorm_matches_reference(rng, dtype, layout, shape):
    n, d = shape
    c, r = _bn_pair(rng, d, dtype)
    for step in range(2):   # the second pass starts from updated running statistics
        x = to_layout((3 * rng.standard_normal(shape) + 2).astype(dtype), layout)
        before = snapshot(x)
        out_c, out_r = c.forward(x), r.forward(x)
        assert_within(out_c, out_r, _bn_bound(out_r, n, dtype), "out")
        _compare_bn(c, r, n, dtype)
        dout = to_layout(rng.standard_normal(shape).astype(dtype), layout)
        dx_c, dx_r = c.backward(dout), r.backward(dout)
        assert_within(dx_c, dx_r, _bn_bound(dx_r, n, dtype, _dx_scale(r, dout)), "dx")
        assert_within(c.dgamma, r.dgamma, _bn_bound(r.dgamma, n, dtype), "dgamma")
        assert_within(c.dbeta, r.dbeta, _bn_bound(r.dbeta, n, dtype), "dbeta")
        assert snapshot(x) == before
    x = to_layout(rng.standard_normal(shape).astype(dtype), layout)
    out_c, out_r = c.forward(x, train_flg=False), r.forward(x, train_flg=False)
    assert_within(out_c, out_r, _bn_bound(out_r, n, dtype), "inference out")


def test_batchnorm_4d_input(rng, dtype):
    x = rng.standard_normal((5, 2, 3, 4)).astype(dtype)
    c, r = _bn_pair(rng, 24, dtype)
    out_c, out_r = c.forward(x), r.forward(x)
    assert out_c.shape == x.shape and c.input_shape == x.shape
    assert_within(out_c, out_r, _bn_bound(out_r, 5, dtype), "out")
    dout = rng.standard_normal(x.shape).astype(dtype)
    dx_c = c.backward(dout)
    assert dx_c.shape == x.shape
    assert_within(dx_c, r.backward(dout), _bn_bound(dx_c, 5, dtype, _dx_scale(r, dout).max()), "dx")
    # the same numbers as the (N, C*H*W) input
    flat = C.BatchNormalization(c.gamma, c.beta)
    assert_bitwise(flat.forward(x.reshape(5, -1)).reshape(x.shape), out_c)


def test_batchnorm_running_statistics_follow_the_books_rule(rng, dtype):
    d = 6
    c = C.BatchNormalization(np.ones(d, dtype), np.zeros(d, dtype), momentum=0.8)
    mean, var = np.zeros(d), np.zeros(d)
    for _ in range(3):
        x = (rng.standard_normal((40, d)) * 2 + 5).astype(dtype)
        c.forward(x)
        x64 = x.astype(np.float64)
        mean = 0.8 * mean + 0.2 * x64.mean(0)
        var = 0.8 * var + 0.2 * x64.var(0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c.running_mean, mean, rtol=tol)
    np.testing.assert_allclose(c.running_var, var, rtol=tol)
    assert c.running_mean.dtype == dtype
    # inference uses them: (x - mean) / sqrt(var + 1e-6)
    x = rng.standard_normal((4, d)).astype(dtype)
    expect = (x.astype(np.float64) - mean) / np.sqrt(var + 1e-6)
    np.testing.assert_allclose(c.forward(x, train_flg=False), expect, rtol=tol * 10, atol=tol)


def test_batchnorm_statistics_given_are_copied(rng):
    mean, var = np.full(3, 0.5), np.full(3, 2.0)
    c = C.BatchNormalization(np.ones(3), np.zeros(3), running_mean=mean, running_var=var)
    c.forward(rng.standard_normal((8, 3)))
    assert (mean == 0.5).all() and (var == 2.0).all()
    assert not np.shares_memory(c.running_mean, mean)


@pytest.mark.parametrize("impl", [C, R], ids=["compiled", "reference"])
@pytest.mark.parametrize("shape", [(1, 3), (2, 2), (7, 5), (4, 2, 1, 3)])
def test_batchnorm_gradient_is_numerical(rng, impl, shape):
    d = int(np.prod(shape[1:]))
    x = 2 * rng.standard_normal(shape) + 1
    w = rng.standard_normal(shape)
    gamma, beta = 1 + 0.3 * rng.standard_normal(d), rng.standard_normal(d)

    def loss(_):
        return float(np.sum(impl.BatchNormalization(gamma, beta).forward(x) * w))

    layer = impl.BatchNormalization(gamma, beta)
    layer.forward(x)
    dx = layer.backward(w)
    for got, param in ((dx, x), (layer.dgamma, gamma), (layer.dbeta, beta)):
        num = numerical_gradient(loss, param, 1e-5 * max(1.0, float(np.abs(param).max())))
        assert np.all(np.abs(got - num) <= 1e-8 + 1e-5 * np.abs(num)), (got, num)


@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from(DTYPES),
       st.floats(-1e3, 1e3), st.floats(1e-3, 1e3))
def test_batchnorm_hypothesis(n, d, dtype, shift, spread):
    rng = np.random.default_rng(n * 41 + d)
    x = (spread * rng.standard_normal((n, d)) + shift).astype(dtype)
    c, r = _bn_pair(rng, d, dtype)
    out_c, out_r = c.forward(x), r.forward(x)
    assert_within(out_c, out_r, _bn_bound(out_r, n, dtype) * (1 + abs(shift) / spread), "out")
    dout = rng.standard_normal((n, d)).astype(dtype)
    dx_c, dx_r = c.backward(dout), r.backward(dout)
    assert_within(dx_c, dx_r, _bn_bound(dx_r, n, dtype, _dx_scale(r, dout))
                  * (1 + abs(shift) / spread), "dx")


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("impl", [C, R], ids=["compiled", "reference"])
def test_bad_arguments_are_named(impl):
    with pytest.raises(ValueError, match="dropout_ratio"):
        impl.Dropout(1.5)
    with pytest.raises(TypeError, match="dropout_ratio"):
        impl.Dropout("0.5")
    with pytest.raises(TypeError, match="rng"):
        impl.Dropout(0.5, rng="seed")
    with pytest.raises(ValueError, match="beta"):
        impl.BatchNormalization(np.ones(3), np.zeros(4))
    with pytest.raises(ValueError, match="momentum"):
        impl.BatchNormalization(np.ones(3), np.zeros(3), momentum=2.0)
    with pytest.raises(ValueError, match="running_var"):
        impl.BatchNormalization(np.ones(3), np.zeros(3), running_var=np.ones(2))
    with pytest.raises(RuntimeError, match="forward"):
        impl.Dropout().backward(np.ones(3))
    with pytest.raises(RuntimeError, match="forward"):
        impl.BatchNormalization(np.ones(3), np.zeros(3)).backward(np.ones((2, 3)))


@pytest.mark.parametrize("impl", [C, R], ids=["compiled", "reference"])
def test_bad_input_changes_nothing(impl, rng):
    layer = impl.BatchNormalization(np.ones(4), np.zeros(4))
    layer.forward(rng.standard_normal((5, 4)))
    state = {k: (None if v is None else np.array(v)) for k, v in vars(layer).items()
             if k in ("running_mean", "running_var", "xc", "xn", "std")}
    for bad, what in ((rng.standard_normal((5, 3)), "features"), (np.ones((2, 2, 4)), "x"),
                      (np.array(["a"] * 4).reshape(1, 4), "x")):
        with pytest.raises((ValueError, TypeError), match=what):
            layer.forward(bad)
    with pytest.raises(ValueError, match="dout"):
        layer.backward(np.ones((4, 4)))
    for k, v in state.items():
        assert_bitwise(getattr(layer, k), v)
    drop = impl.Dropout(0.5, rng=1)
    drop.forward(np.ones((3, 3)))
    mask = drop.mask.copy()
    with pytest.raises(ValueError, match="dout"):
        drop.backward(np.ones((3, 4)))
    with pytest.raises(TypeError, match="x"):
        drop.forward(np.array([1 + 2j]))
    assert_bitwise(drop.mask, mask)


def test_changed_attributes_are_checked():
    drop = C.Dropout(0.5)
    drop.dropout_ratio = -0.1
    with pytest.raises(ValueError, match="Dropout.dropout_ratio"):
        drop.forward(np.ones(3))
    bn = C.BatchNormalization(np.ones(3), np.zeros(3))
    bn.momentum = "fast"
    with pytest.raises(TypeError, match="BatchNormalization.momentum"):
        bn.forward(np.ones((2, 3)))
    assert bn.running_mean is None and bn.xn is None
    bn.momentum = 0.9
    bn.forward(np.ones((2, 3)))
    bn.std = np.ones(4)
    with pytest.raises(ValueError, match="std"):
        bn.backward(np.ones((2, 3)))
    bn.gamma = np.ones(5)
    with pytest.raises(ValueError, match="gamma"):
        bn.forward(np.ones((2, 3)))


def test_backend_kernels_check_lengths():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match="running_var"):
        normalization.batchnorm_train(x, np.ones(3), np.ones(3), 1e-6, 0.9, x.copy(), x.copy(),
                                      x.copy(), np.ones(3), np.ones(3), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="work"):
        normalization.batchnorm_backward(x, x, np.ones(3), np.ones(3), x.copy(), np.ones(3),
                                         np.ones(3), np.ones(8))
    with pytest.raises(ValueError, match="ratio"):
        normalization.dropout_threshold(1.5)
    assert _backend.scale(np.array([3.0], np.float32), 0.1)[0] == np.float32(3.0) * np.float32(0.1)
