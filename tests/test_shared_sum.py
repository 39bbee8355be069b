"""The shared-memory gradient sum of a data-parallel step on one node: its kernel against
numpy, and the fused workspace computing its gradients in a buffer it is handed.

(The MPI side, the window itself, runs under mpiexec in test_distributed.py.)
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fastmlp
from fastmlp import _backend

U = {np.float32: 6.0e-8, np.float64: 1.1e-16}


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 5), n=st.integers(1, 1500), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_every_row_ends_with_the_scaled_sum_of_its_columns(k, n, data, dtype):
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    rng = np.random.default_rng(n * 7 + k)
    rows = rng.standard_normal((k, n)).astype(dtype)
    scales = rng.random(k)
    before = rows.copy()
    _backend.scaled_sum_to_all(rows, scales, lo, hi)
    want = (scales[:, None] * before.astype(np.float64)).sum(axis=0)
    bound = 2 * k * U[dtype] * (scales[:, None] * np.abs(before)).sum(axis=0) + 4 * U[dtype] * np.abs(want)
    for q in range(k):   # inside [lo, hi): the sum, bitwise the same in every row
        np.testing.assert_array_equal(rows[q, lo:hi], rows[0, lo:hi])
        np.testing.assert_array_equal(rows[q, :lo], before[q, :lo])   # outside: untouched
        np.testing.assert_array_equal(rows[q, hi:], before[q, hi:])
    assert (np.abs(rows[0, lo:hi] - want[lo:hi]) <= bound[lo:hi]).all()


@pytest.mark.parametrize("lo, hi", [(-1, 3), (2, 1), (0, 11)])
def test_columns_outside_the_rows_are_refused(lo, hi):
    rows = np.ones((2, 10))
    with pytest.raises(ValueError, match="columns"):
        _backend.scaled_sum_to_all(rows, np.ones(2), lo, hi)
    assert (rows == 1).all()


def test_one_scale_per_row():
    with pytest.raises(ValueError, match="scales"):
        _backend.scaled_sum_to_all(np.ones((3, 8)), np.ones(2), 0, 8)


def _buffer(net):
    from fastmlp._fused import gradient_layout
    sizes = [net.input_size, *net.hidden_size_list, net.output_size]
    length = gradient_layout(sizes, net.dtype)[2]
    block = np.zeros(length + 64, net.dtype)   # one cache line of slack to align it
    start = (-block.ctypes.data % 64) // block.itemsize
    return block[start:start + length]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_gradients_computed_in_a_handed_buffer_equal_its_own(dtype):
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((13, 6)).astype(dtype), rng.integers(0, 4, 13)
    plain = fastmlp.MultiLayerNet(6, [5, 7], 4, dtype=dtype, seed=2)
    handed = fastmlp.MultiLayerNet(6, [5, 7], 4, dtype=dtype, seed=2)
    buffer = _buffer(handed)
    handed._fused.gradient_buffer = buffer
    want, got = plain.gradient(x, t), handed.gradient(x, t)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
        assert np.shares_memory(got[key], buffer)


def test_an_input_inside_the_handed_buffer_gets_a_workspace_of_its_own():
    net = fastmlp.MultiLayerNet(6, [5], 3, seed=2)
    buffer = _buffer(net)
    net._fused.gradient_buffer = buffer
    x = buffer[:4 * 6].reshape(4, 6)   # the caller's batch lies where the gradients go
    x[:] = np.random.default_rng(3).standard_normal((4, 6))
    x_before = x.copy()
    reference = fastmlp.MultiLayerNet(6, [5], 3, seed=2)
    want = reference.gradient(x_before, [0, 1, 2, 0])
    got = net.gradient(x, [0, 1, 2, 0])
    np.testing.assert_array_equal(x, x_before)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
        assert not np.shares_memory(got[key], buffer)


def test_a_buffer_that_does_not_fit_is_not_used():
    net = fastmlp.MultiLayerNet(6, [5], 3, seed=2)
    net._fused.gradient_buffer = np.zeros(7)
    grads = net.gradient(np.ones((2, 6)), [0, 1])
    assert not any(np.shares_memory(g, net._fused.gradient_buffer) for g in grads.values())
