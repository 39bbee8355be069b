"""After its first step, a training step allocates no new arrays (buffers are reused).

tracemalloc sees numpy's array allocations; the bound below is half the
smallest array a step could allocate (the batch's labels), well above the
few Python objects a step creates (a float for the loss, the grads dict).
"""
import tracemalloc

import numpy as np
import pytest

import fastmlp

BATCH = 2048
SMALLEST_BATCH_ARRAY = BATCH * np.dtype(np.intp).itemsize   # the labels of one batch


def _peak_bytes_over(run, repeats=5):
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(repeats):
            run()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _data(dtype):
    rng = np.random.default_rng(0)
    x = rng.random((8 * BATCH, 64)).astype(dtype)
    t = rng.integers(0, 10, 8 * BATCH).astype(np.intp)
    return x, t


def test_the_measurement_sees_a_batch_sized_allocation():
    assert _peak_bytes_over(lambda: np.empty(BATCH, np.intp)) >= SMALLEST_BATCH_ARRAY


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", ["SGD", "Momentum", "AdaGrad", "Adam"])
def test_textbook_step_allocates_no_arrays(dtype, optimizer):
    x, t = _data(dtype)
    net = fastmlp.MultiLayerNet(64, [50, 30], 10, dtype=dtype, seed=0)
    opt = getattr(fastmlp.optimizers, optimizer)(lr=0.01)
    xb, tb = x[:BATCH], t[:BATCH]
    opt.update(net.params, net.gradient(xb, tb))   # first step: buffers and state are made
    peak = _peak_bytes_over(lambda: opt.update(net.params, net.gradient(xb, tb)))
    assert peak < SMALLEST_BATCH_ARRAY // 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_trainer_step_allocates_no_arrays(dtype, optimizer):
    x, t = _data(dtype)
    net = fastmlp.MultiLayerNet(64, [50, 30], 10, dtype=dtype, seed=0)
    trainer = fastmlp.Trainer(net, x, t, x[:100], t[:100], epochs=100, mini_batch_size=BATCH,
                              optimizer=optimizer, optimizer_param={"lr": 0.01}, verbose=False,
                              seed=0, sampling="epoch")   # 'book' allocates its draw, as the book
    trainer.train_step()
    peak = _peak_bytes_over(trainer.train_step, repeats=3)   # steps 2-4 of 8: no evaluation
    assert peak < SMALLEST_BATCH_ARRAY // 2
