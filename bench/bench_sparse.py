"""Sparse X: densify each mini-batch (what the estimators do) or multiply the sparse rows?

The first layer's two products per step, for a CSR batch of ``--batch`` rows of
``--features`` columns and a (features, hidden) weight matrix: ``x @ W`` (forward) and
``x.T @ d`` (its weight gradient). "densify" converts the batch rows to a dense array and
uses numpy's BLAS for both (the gather is included); "sparse" uses scipy.sparse's products
on the same rows. Medians of interleaved repeats, per density; ratio > 1: densify is faster.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_sparse.py
"""
import argparse
import statistics
import time

import numpy as np


def main(argv=None):
    from scipy import sparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features", type=int, default=2000)
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--densities", type=float, nargs="+", default=[0.001, 0.01, 0.05, 0.2])
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((a.features, a.hidden))
    d = rng.standard_normal((a.batch, a.hidden))
    print(f"{a.rows} x {a.features} CSR, batch {a.batch}, hidden {a.hidden}, float64; "
          f"median ms per step of {a.repeats} interleaved repeats")
    print(f"{'density':>8} {'densify ms':>11} {'sparse ms':>10} {'sparse/densify':>15}")
    for density in a.densities:
        X = sparse.random(a.rows, a.features, density=density, format="csr", random_state=0)
        starts = rng.integers(0, a.rows - a.batch, 50)

        def densify():
            for s in starts:
                xb = X[s:s + a.batch].toarray()
                xb @ W
                xb.T @ d

        def products():
            for s in starts:
                xb = X[s:s + a.batch]
                xb @ W
                xb.T @ d

        times = {"densify": [], "sparse": []}
        for _ in range(a.repeats):
            for name, f in (("densify", densify), ("sparse", products)):
                t0 = time.perf_counter()
                f()
                times[name].append((time.perf_counter() - t0) / len(starts) * 1e3)
        dense_ms = statistics.median(times["densify"])
        sparse_ms = statistics.median(times["sparse"])
        print(f"{density:>8g} {dense_ms:>11.3f} {sparse_ms:>10.3f} {sparse_ms / dense_ms:>15.2f}")


if __name__ == "__main__":
    main()
