"""fastmlp.MLPClassifier vs sklearn.neural_network.MLPClassifier on digits, side by side.

Same hyper-parameters, same train/test split, fits alternated within each
repeat so both see the same machine load; median fit time of the repeats and
the test accuracy of each. Usage:

    python bench/bench_estimator.py [--repeats 3] [--threads N] [--max-iter 200]
"""
import argparse
import os
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS/OpenMP threads of both (threadpoolctl); default: unchanged")
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--hidden", type=int, nargs="+", default=[100])
    parser.add_argument("--solver", default="adam")
    args = parser.parse_args(argv)

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP
    from threadpoolctl import threadpool_limits

    import fastmlp
    from fastmlp.datasets import load_digits
    from fastmlp.estimator import MLPClassifier as FastMLP

    # fastmlp's embedded digits, the book's ((x_train, t_train), (x_test, t_test)), scaled to [0, 1]
    (X_tr, y_tr), (X_te, y_te) = load_digits(normalize=True)
    X_tr, X_te = np.asarray(X_tr, np.float64), np.asarray(X_te, np.float64)
    hp = dict(hidden_layer_sizes=tuple(args.hidden), solver=args.solver, max_iter=args.max_iter,
              random_state=0)
    if args.threads:
        fastmlp.set_num_threads(args.threads)
        limiter = threadpool_limits(args.threads)
    print(f"digits: train {X_tr.shape}, test {X_te.shape}; {hp}; threads="
          f"{args.threads or 'default'}; repeats={args.repeats} (median)")
    rows = []
    for dtype in (np.float64, np.float32):
        a, b = X_tr.astype(dtype), X_te.astype(dtype)
        times = {"fastmlp": [], "sklearn": []}
        acc = {}
        epochs = {}
        for _ in range(args.repeats):
            for name, cls in (("fastmlp", FastMLP), ("sklearn", SkMLP)):
                model = cls(**hp)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    t0 = time.perf_counter()
                    model.fit(a, y_tr)
                    times[name].append(time.perf_counter() - t0)
                acc[name] = model.score(b, y_te)
                epochs[name] = model.n_iter_
        tf, ts = statistics.median(times["fastmlp"]), statistics.median(times["sklearn"])
        rows.append((np.dtype(dtype).name, tf, ts, ts / tf, acc["fastmlp"], acc["sklearn"],
                     epochs["fastmlp"], epochs["sklearn"]))
    print(f"{'dtype':8} {'fastmlp s':>10} {'sklearn s':>10} {'speed-up':>9} "
          f"{'fastmlp acc':>12} {'sklearn acc':>12} {'epochs f/s':>11}")
    for r in rows:
        print(f"{r[0]:8} {r[1]:10.3f} {r[2]:10.3f} {r[3]:8.1f}x {r[4]:12.4f} {r[5]:12.4f} "
              f"{r[6]:>5}/{r[7]:<5}")
    if args.threads:
        limiter.restore_original_limits()
    return rows


if __name__ == "__main__":
    main()
