"""fastmlp inside someone else's program: the GIL, Python threads, threadpoolctl."""
import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastmlp
from fastmlp import _backend


def _train(seed, steps=30, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.random((64, 20)).astype(dtype)
    t = rng.integers(0, 5, 64)
    net = fastmlp.MultiLayerNet(20, [32, 16], 5, dtype=dtype, seed=seed)
    opt = fastmlp.optimizers.Adam(lr=0.01)
    for _ in range(steps):
        opt.update(net.params, net.gradient(x, t))
    return net.params


def test_kernels_release_the_gil():
    """While one thread is inside one long compiled call, another thread keeps running Python."""
    rng = np.random.default_rng(0)
    x = rng.random((1500, 1500))
    W = rng.random((1500, 1500))
    b = np.zeros(1500)
    done = threading.Event()
    counts = []

    def spin():
        n = 0
        while not done.is_set():
            n += 1
        counts.append(n)

    with threadpool_limits(limits=1, user_api="blas"):   # one long call, on one core
        spinner = threading.Thread(target=spin)
        spinner.start()
        try:
            for _ in range(3):
                _backend.affine_forward(x, W, b)     # ~0.1-0.3 s each, a single C call
        finally:
            done.set()
            spinner.join()
    # With the GIL held through each call the spinner could only run between the
    # calls (a few microseconds); released, it runs for the calls' whole duration.
    assert counts[0] > 10_000


def test_two_threads_train_two_networks_like_serial():
    with threadpool_limits(limits=1, user_api="blas"):   # BLAS bits depend on its thread count
        serial = [_train(seed) for seed in (1, 2)]
        results = [None, None]

        def run(i, seed):
            results[i] = _train(seed)

        threads = [threading.Thread(target=run, args=(i, seed)) for i, seed in enumerate((1, 2))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    for got, want in zip(results, serial):
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_from_many_threads(dtype):
    net = fastmlp.MultiLayerNet(20, [32, 16], 5, dtype=dtype, seed=3)
    rng = np.random.default_rng(4)
    inputs = [rng.random((n, 20)) for n in (1, 7, 64, 300) * 4]
    expected = [net.predict(x) for x in inputs]
    got = [None] * len(inputs)
    barrier = threading.Barrier(len(inputs))

    def run(i):
        barrier.wait()
        for _ in range(20):
            got[i] = net.predict(inputs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(inputs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_networks_share_no_state():
    a = fastmlp.MultiLayerNet(6, [5], 3, seed=0)
    b = fastmlp.MultiLayerNet(6, [5], 3, seed=0)
    x, t = np.ones((4, 6)), np.array([0, 1, 2, 0])
    ga = {k: v.copy() for k, v in a.gradient(x, t).items()}
    b.gradient(x * 2, t[::-1])   # another network's step must not touch a's buffers
    for key, value in a.gradient(x, t).items():
        np.testing.assert_array_equal(value, ga[key])
    assert not any(np.shares_memory(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.skipif(not fastmlp.threads.openmp_enabled(), reason="built without OpenMP")
def test_openmp_pool_visible_and_limited_by_threadpoolctl():
    assert any(info["user_api"] == "openmp" for info in threadpool_info())
    fastmlp.set_num_threads(None)
    with threadpool_limits(limits=1, user_api="openmp"):
        assert fastmlp.get_num_threads() == 1
    fastmlp.set_num_threads(None)
