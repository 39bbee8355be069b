"""Which split of the 2 cores between numpy's BLAS and fastmlp's OpenMP kernels trains fastest?

Times one textbook training step (net.gradient + Adam update) per network,
float32, for each split, interleaved and repeated (medians), and prints
each as a multiple of the default (BLAS on all cores, elementwise serial).
"BLAS 2 + OpenMP 2" forces the OpenMP path of the elementwise kernels that
fastmlp.threads keeps serial beside a pthreads BLAS.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/threads_split.py
"""
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastmlp
from fastmlp import threads

CONFIGS = [([784, 100, 100, 10], 128), ([784, 1024, 1024, 10], 512)]
SPLITS = {  # name: (BLAS threads, fastmlp kernel threads, force OpenMP beside the BLAS)
    "BLAS 2, kernels serial (default)": (2, 1, False),
    "BLAS 1, kernels serial": (1, 1, False),
    "BLAS 2 + OpenMP 2": (2, 2, True),
    "BLAS 1 + OpenMP 2": (1, 2, True),
}


def step_seconds(net, opt, x, t, batch, blas, kernels, force, seconds=0.4):
    fastmlp.set_num_threads(kernels)
    threads.OPENMP_SHARES_BLAS_POOL, threads.PARALLEL_MIN_ELEMENTS = (
        (True, 0) if force else (_SHARED, _MIN))
    with threadpool_limits(limits=blas, user_api="blas"):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or n < 5:
            j = (n * batch) % (len(x) - batch)
            opt.update(net.params, net.gradient(x[j:j + batch], t[j:j + batch]))
            n += 1
        return (time.perf_counter() - start) / n


_SHARED, _MIN = threads.OPENMP_SHARES_BLAS_POOL, threads.PARALLEL_MIN_ELEMENTS


def main(repeats=5):
    rng = np.random.default_rng(0)
    x = rng.random((10000, 784), dtype=np.float32)
    t = rng.integers(0, 10, 10000)
    for sizes, batch in CONFIGS:
        net = fastmlp.MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], dtype=np.float32, seed=0)
        opt = fastmlp.optimizers.Adam(lr=1e-4)
        times = {name: [] for name in SPLITS}
        for _ in range(repeats):
            for name, split in SPLITS.items():
                times[name].append(step_seconds(net, opt, x, t, batch, *split))
        base = np.median(times[next(iter(SPLITS))])
        print(f"{sizes} @{batch}, float32, Adam: median step time, as a multiple of the default")
        for name, values in times.items():
            print(f"  {name:34s} {np.median(values) * 1e3:8.3f} ms  x{np.median(values) / base:5.2f}")
    fastmlp.set_num_threads(None)
    threads.OPENMP_SHARES_BLAS_POOL, threads.PARALLEL_MIN_ELEMENTS = _SHARED, _MIN


if __name__ == "__main__":
    main()
