"""Where a training step's time goes beyond its matrix products, per network and dtype.

Each row times, interleaved and repeated (min and median over the repeats):

- gemms:     the step's GEMMs alone, np.matmul(out=) on hot operands (peers.py's limit)
- kernel:    fastmlp's fused forward + loss + backward call, same batch every time (hot x)
- cold x:    the same call on batches drawn in turn from 20,000 rows (x read from memory)
- gradient:  net.gradient(x, t) on those batches (adds the Python-level checks and record)
- textbook:  opt.update(net.params, net.gradient(x, t)) with SGD (adds the update pass)
- train_step: net.train_step(x, t, SGD) (the update fused into the backward GEMMs)

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/step_budget.py [--repeats R]
"""
import argparse
import time

import numpy as np

import fastmlp
from fastmlp import _backend

CONFIGS = [([784, 50, 10], 100), ([784, 100, 100, 10], 128), ([784, 256, 256, 10], 256),
           ([784, 1024, 1024, 10], 512)]
ROWS = 20000


def gemm_step(sizes, batch, dtype, rng):
    """The step's products alone: forward, dW, and dx except for the first layer."""
    work = []
    for k, m in zip(sizes[:-1], sizes[1:]):
        x, W = rng.random((batch, k)).astype(dtype), rng.random((k, m)).astype(dtype)
        d = rng.random((batch, m)).astype(dtype)
        work.append((x, W, d, np.empty((batch, m), dtype), np.empty_like(W), np.empty_like(x)))

    def run():
        for i, (x, W, d, y, dW, dx) in enumerate(work):
            np.matmul(x, W, out=y)
            np.matmul(x.T, d, out=dW)
            if i:
                np.matmul(d, W.T, out=dx)
    return run


def candidates(sizes, batch, dtype):
    rng = np.random.default_rng(1)
    X = rng.random((ROWS, sizes[0])).astype(dtype)
    T = rng.integers(0, sizes[-1], ROWS)
    net = fastmlp.MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], dtype=dtype, seed=0)
    opt = fastmlp.optimizers.SGD(lr=0.01)
    x_hot, t_hot = X[:batch].copy(), T[:batch].copy()
    net.gradient(x_hot, t_hot)
    plan = net._fused.plan(net)
    ws, Ws, bs = net._fused.workspace, plan.Ws, plan.bs
    position = [0]

    def batch_slice():
        j = position[0]
        position[0] = (j + batch) % (ROWS - batch)
        return slice(j, j + batch)

    def kernel(x, t):
        _backend.mlp_gradient(x, t, None, None, Ws, bs, ws.hs, ws.mask_bytes, ws.ds, ws.dWs,
                              ws.dbs, 0, 0, 0.0, 0.0)

    def cold_kernel():
        s = batch_slice()
        kernel(X[s], T[s])

    def gradient():
        s = batch_slice()
        net.gradient(X[s], T[s])

    def textbook():
        s = batch_slice()
        opt.update(net.params, net.gradient(X[s], T[s]))

    def train_step():
        s = batch_slice()
        net.train_step(X[s], T[s], opt)

    return {"gemms": gemm_step(sizes, batch, dtype, rng), "kernel": lambda: kernel(x_hot, t_hot),
            "cold x": cold_kernel, "gradient": gradient, "textbook": textbook,
            "train_step": train_step}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print("µs per step, min / median of", args.repeats, "interleaved repeats; "
          "(×) = min as a multiple of the GEMMs' min")
    for sizes, batch in CONFIGS:
        for dtype in (np.float32, np.float64):
            funcs = candidates(sizes, batch, dtype)
            calls = max(3, int(2e7 / (batch * sum(a * b for a, b in zip(sizes, sizes[1:])))))
            times = {name: [] for name in funcs}
            for _ in range(args.repeats):
                for name, f in funcs.items():
                    f()
                    start = time.perf_counter()
                    for _ in range(calls):
                        f()
                    times[name].append((time.perf_counter() - start) / calls * 1e6)
            base = min(times["gemms"])
            cells = [f"{name} {min(v):.0f}/{np.median(v):.0f} ({min(v) / base:.2f}×)"
                     for name, v in times.items()]
            net = "-".join(map(str, sizes))
            print(f"{net} @{batch} {np.dtype(dtype).name}: " + ", ".join(cells), flush=True)


if __name__ == "__main__":
    main()
