"""Inference's row-block products (``kernels/fastmlp_blas.h``): with numpy's OpenBLAS on two
or more threads, ``predict`` hands a big enough layer product to OpenBLAS's
``cblas_?gemm_batch`` as row blocks, one single-threaded product per BLAS thread.

That routine crashes on any product of at most 100^3 multiply-adds (DYNAMIC_ARCH builds), so
the tests check that no such block reaches it, and that ``predict`` through the blocks
gives the reference's bits on integer-valued data and stays within the reduction bound of
``TESTING.md`` on random data (BLAS products at another split differ in the last bits).
"""
import numpy as np
import pytest
from conftest import TOL
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

import fastmlp
from fastmlp import reference as R
from fastmlp._blas import numpy_blas_path
from fastmlp._kernels import mlp

DTYPES = [np.float32, np.float64]
CHECKED_OPENBLAS = mlp.row_blocks_available()


@pytest.fixture
def two_threads():
    """numpy's BLAS on two threads for the test (skipped where it cannot have two)."""
    fastmlp.set_num_threads(2)
    try:
        if fastmlp.get_num_threads() < 2:
            pytest.skip("numpy's BLAS runs one thread on this machine")
        yield
    finally:
        fastmlp.set_num_threads(None)


@pytest.mark.parametrize("double", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_small_products_never_reach_the_batch_routine(double, threads):
    fastmlp.set_num_threads(threads)
    try:
        # every block of these has at most 100^3 multiply-adds (the routine's crash range)
        for m, n, k in [(100, 10, 50), (100, 100, 100), (100, 10, 784), (1, 1024, 784),
                        (100, 64, 128), (10000, 1, 100), (7, 300, 300), (2, 4096, 200),
                        (3, 1000, 784), (4, 1000, 784)]:
            blocks = mlp.row_blocks(m, n, k, double)
            # the smallest block, whether C is split by rows or by columns
            smallest = min((m // blocks) * n, m * (n // blocks)) * k if blocks else None
            assert blocks == 0 or smallest > 100 ** 3, (m, n, k, blocks)
        assert mlp.row_blocks(100, 100, 100, double) == 0
    finally:
        fastmlp.set_num_threads(None)


def test_one_thread_runs_one_gemm():
    fastmlp.set_num_threads(1)
    try:
        assert mlp.row_blocks(10000, 1024, 1024, False) == 0
        assert mlp.row_blocks(10000, 1024, 1024, True) == 0
    finally:
        fastmlp.set_num_threads(None)


def test_the_checked_openblas_gets_row_blocks():
    # numpy's own wheel BLAS (scipy_openblas, ILP64) at a checked version must be wired up:
    # otherwise the tests below would be skipped rather than fail
    blas = [i for i in threadpool_info() if i["filepath"] == numpy_blas_path()]
    if not any(i["internal_api"] == "openblas" and i["prefix"] == "libscipy_openblas"
               and (i["version"] or "").startswith("0.3.31.") for i in blas):
        pytest.skip(f"numpy's BLAS is not OpenBLAS 0.3.31 from its wheel: {blas}")
    assert CHECKED_OPENBLAS


@pytest.mark.skipif(not CHECKED_OPENBLAS, reason="numpy's BLAS is not a checked OpenBLAS "
                    "version: inference runs one GEMM per layer")
def test_big_products_split_into_one_block_per_thread(two_threads):
    assert mlp.row_blocks(100, 100, 784, False) == 2
    assert mlp.row_blocks(101, 256, 784, True) == 2
    # blocks of 50 rows would hold 50 * 100 * 100 < 1.5e6 multiply-adds: one GEMM
    assert mlp.row_blocks(100, 100, 100, False) == 0
    # a wide layer on few rows is split by columns (n >= 8 m): blocks of 4 x 500 x 784
    assert mlp.row_blocks(4, 1000, 784, True) == 2
    assert mlp.row_blocks(3, 1000, 784, True) == 0       # 3 x 500 x 784 < 1.5e6


def _integer_net(sizes, dtype, rng):
    """A network and its reference twin holding the same small integer weights."""
    net = fastmlp.MultiLayerNet(sizes[0], list(sizes[1:-1]), sizes[-1], dtype=dtype, seed=0)
    ref = R.MultiLayerNet(sizes[0], list(sizes[1:-1]), sizes[-1], dtype=dtype, seed=0)
    for key in net.params:
        values = rng.integers(-2, 3, net.params[key].shape).astype(dtype)
        net.params[key][...] = values
        ref.params[key][...] = values
    return net, ref


def _assert_exact(net, x):
    """Every partial sum of every product of ``net.predict(x)`` is an integer below 2^24
    (float32's exact range): bounded by sum_k |a_k| |W_kj| + |b_j|, computed in float64.
    Then any summation order gives the same bits, so the comparisons below may be exact."""
    a = x.astype(np.float64)
    for i in range(1, net.hidden_layer_num + 2):
        W, b = net.params[f"W{i}"].astype(np.float64), net.params[f"b{i}"].astype(np.float64)
        assert (np.abs(a) @ np.abs(W) + np.abs(b)).max() < 2 ** 24
        a = a @ W + b
        a = np.maximum(a, 0) if i <= net.hidden_layer_num else a


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 260), hidden=st.integers(1, 300), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2 ** 32 - 1))
def test_predict_gives_the_reference_bits_on_integer_data(n, hidden, dtype, seed):
    fastmlp.set_num_threads(2)
    try:
        rng = np.random.default_rng(seed)
        net, ref = _integer_net((784, hidden, 10), dtype, rng)
        x = rng.integers(-3, 4, (n, 784)).astype(dtype)
        _assert_exact(net, x)
        np.testing.assert_array_equal(net.predict(x), ref.predict(x))
    finally:
        fastmlp.set_num_threads(None)


@pytest.mark.skipif(not CHECKED_OPENBLAS, reason="numpy's BLAS is not a checked OpenBLAS "
                    "version: inference runs one GEMM per layer")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sizes, n", [((784, 100, 100, 10), 100), ((784, 256, 256, 10), 101),
                                      ((784, 300, 10), 257), ((784, 128, 64, 10), 100),
                                      # by columns (n >= 8 m), split evenly and unevenly
                                      ((784, 1032, 10), 100), ((784, 641, 10), 37)])
def test_split_predict_matches_the_reference(two_threads, dtype, sizes, n):
    assert mlp.row_blocks(n, sizes[1], sizes[0], dtype is np.float64) >= 2   # the path is run
    rng = np.random.default_rng(n)
    net, ref = _integer_net(sizes, dtype, rng)
    x = rng.integers(-3, 4, (n, 784)).astype(dtype)
    _assert_exact(net, x)
    np.testing.assert_array_equal(net.predict(x), ref.predict(x))
    # random data: TESTING.md's fallback bound against the reference
    net, ref = (cls(sizes[0], list(sizes[1:-1]), sizes[-1], dtype=dtype, seed=1)
                for cls in (fastmlp.MultiLayerNet, R.MultiLayerNet))
    x = rng.standard_normal((n, 784)).astype(dtype)
    want = ref.predict(x)
    np.testing.assert_allclose(net.predict(x), want, rtol=TOL[dtype]["rtol"],
                               atol=TOL[dtype]["atol_scale"] * np.abs(want).max())


def test_extend_predict_through_blocks_matches_the_layer_path(two_threads):
    net = fastmlp.MultiLayerNetExtend(784, [256, 256], 10, use_batchnorm=True, use_dropout=True,
                                      dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((100, 784))
    fused = net.predict(x)
    by_layers = x
    for layer in net.layers.values():
        by_layers = (layer.forward(by_layers, False)
                     if isinstance(layer, (fastmlp.layers.BatchNormalization,
                                           fastmlp.layers.Dropout))
                     else layer.forward(by_layers))
    np.testing.assert_allclose(fused, by_layers, rtol=TOL[np.float64]["rtol"],
                               atol=TOL[np.float64]["atol_scale"] * np.abs(by_layers).max())
