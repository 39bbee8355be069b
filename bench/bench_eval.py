"""``loss`` and ``accuracy`` of the compiled networks against fastmlp.reference (numpy).

Prints, per network and dtype, the median time of each call and the ratio
reference / compiled (higher is better), calls interleaved so all see the same
machine. ``layer`` is the compiled network's route before issue 13 (``loss`` layer by
layer, ``accuracy`` as the fused ``predict`` then numpy's argmax), timed in the same
run. Run it against two trees to compare builds, e.g.::

    flock /tmp/bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        PYTHONPATH=. python bench/bench_eval.py --repeats 15
"""
import argparse
import json
import statistics
import time

import numpy as np

import fastmlp
from fastmlp import _networks, reference

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
            calls = {(impl, m): (lambda net=net, m=m: getattr(net, m)(x, t))
                     for impl, net in nets.items() for m in ("loss", "accuracy")}
            for m in ("loss", "accuracy"):   # the base class's method: the layer route
                calls[("layer", m)] = (lambda m=m: getattr(_networks.MultiLayerNet, m)(
                    nets["compiled"], x, t))
            times = {key: [] for key in calls}
            for call in calls.values():     # warm up (buffers, BLAS threads)
                call()
            for _ in range(args.repeats):
                for key, acc in times.items():
                    acc.append(_time(calls[key], args.inner))
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {"network": f"{n_in}-{'-'.join(map(str, hidden))}-{n_out} @{batch}",
                   "dtype": np.dtype(dtype).name}
            for method in ("loss", "accuracy"):
                for impl in ("compiled", "layer", "reference"):
                    row[f"{method}_{impl}_us"] = round(med[(impl, method)] * 1e6, 1)
                for impl in ("compiled", "layer"):
                    row[f"{method}_{impl}_x_ref"] = round(med[("reference", method)]
                                                          / med[(impl, method)], 2)
            rows.append(row)
            text = f"{row['network']:>20} {row['dtype']:>8}"
            for method in ("loss", "accuracy"):
                text += (f"  {method} {row[f'{method}_compiled_us']:7.1f} us "
                         f"({row[f'{method}_compiled_x_ref']:.2f}x ref; layer route "
                         f"{row[f'{method}_layer_x_ref']:.2f}x)")
            print(json.dumps(row) if args.json else text, flush=True)
    return rows


if __name__ == "__main__":
    main()
