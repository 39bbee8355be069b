"""``loss`` and ``accuracy`` of the compiled networks against fastmlp.reference (numpy).

Prints, per network and dtype, the median time of each call and the ratio
reference / compiled (higher is better), calls interleaved so both see the same
machine. Run it against two trees to compare builds, e.g.::

    flock /tmp/bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        PYTHONPATH=. python bench/bench_eval.py --repeats 15
"""
import argparse
import json
import statistics
import time

import numpy as np

import fastmlp
from fastmlp import reference

NETWORKS = [(784, [100, 100], 10, 128), (784, [256, 256], 10, 256)]


def _time(fn, inner):
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - start) / inner


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--inner", type=int, default=20)
    ap.add_argument("--json", action="store_true", help="one JSON line per row")
    args = ap.parse_args(argv)
    rows = []
    for n_in, hidden, n_out, batch in NETWORKS:
        for dtype in (np.float32, np.float64):
            rng = np.random.default_rng(0)
            x = rng.random((batch, n_in)).astype(dtype)
            t = rng.integers(0, n_out, batch)
            nets = {"compiled": fastmlp.MultiLayerNet(n_in, hidden, n_out, dtype=dtype, seed=0),
                    "reference": reference.MultiLayerNet(n_in, hidden, n_out, dtype=dtype, seed=0)}
            times = {(impl, m): [] for impl in nets for m in ("loss", "accuracy")}
            for net in nets.values():     # warm up (buffers, BLAS threads)
                net.loss(x, t)
                net.accuracy(x, t)
            for _ in range(args.repeats):
                for (impl, method), acc in times.items():
                    acc.append(_time(lambda: getattr(nets[impl], method)(x, t), args.inner))
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {"network": f"{n_in}-{'-'.join(map(str, hidden))}-{n_out} @{batch}",
                   "dtype": np.dtype(dtype).name}
            for method in ("loss", "accuracy"):
                row[f"{method}_us"] = round(med[("compiled", method)] * 1e6, 1)
                row[f"{method}_ref_us"] = round(med[("reference", method)] * 1e6, 1)
                row[f"{method}_x_ref"] = round(med[("reference", method)]
                                               / med[("compiled", method)], 2)
            rows.append(row)
            print(json.dumps(row) if args.json else
                  f"{row['network']:>20} {row['dtype']:>8}  loss {row['loss_us']:8.1f} us "
                  f"({row['loss_x_ref']:.2f}x ref)  accuracy {row['accuracy_us']:8.1f} us "
                  f"({row['accuracy_x_ref']:.2f}x ref)", flush=True)
    return rows


if __name__ == "__main__":
    main()
