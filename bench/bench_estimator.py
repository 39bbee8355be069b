"""fastmlp.MLPClassifier vs sklearn.neural_network.MLPClassifier, side by side.

Measures issue #14's target in one command: for every (dataset, dtype, solver) cell,
fit time of both, the speed-up sklearn_time / fastmlp_time and test accuracy of both.

Datasets: ``digits`` is fastmlp's embedded digits (1438 train / 359 test rows, scaled
to [0, 1]); ``synthetic`` is ``sklearn.datasets.make_classification(n_samples=20000,
n_features=50, n_informative=30, n_classes=5, random_state=0)``, split 80/20 by
``train_test_split(random_state=0, stratify=y)`` and standardised with the training
rows' mean and std. Both libraries get the same split, cast to the cell's dtype
(fastmlp also gets ``dtype=``). ``--max-iter`` defaults to 200 on digits and 20 on
synthetic (so a full matrix at ``--repeats 3`` takes minutes, not hours); a value given
applies to every dataset.

Same hyper-parameters, fits alternated within each repeat (fastmlp, sklearn, fastmlp,
...) so both see the same machine load. Repeat r uses random_state=r for both; a cell
shows the median fit time and the mean test accuracy over the repeats. With lbfgs
sklearn starts from fastmlp's initial weights (its ``_init_coef`` is handed them), so
both run the same deterministic full-batch fit and the cell also shows both final
losses. The last line gives the minimum speed-up and whether every cell passes the
rule: speed-up >= 2 and |accuracy difference| <= 0.01. Usage:

    python bench/bench_estimator.py [--repeats 3] [--threads N] [--max-iter N] [--solver adam lbfgs]
    python bench/bench_estimator.py --dataset digits synthetic --dtype float32 float64 \
        --solver sgd adam lbfgs --json bench_estimator.json      # issue #14's whole matrix
    python bench/bench_estimator.py --step-budget   # one step's cost, piece by piece (1 thread)
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_MAX_ITER = {"digits": 200, "synthetic": 20}
MIN_SPEEDUP, MAX_ACCURACY_GAP = 2.0, 0.01


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS/OpenMP threads of both (threadpoolctl); default: unchanged")
    parser.add_argument("--max-iter", type=int, default=None,
                        help="epochs (lbfgs: iterations); default 200 on digits, 20 on synthetic")
    parser.add_argument("--hidden", type=int, nargs="+", default=[100])
    parser.add_argument("--solver", nargs="+", default=["adam"], choices=["sgd", "adam", "lbfgs"],
                        help="solvers to compare (default adam)")
    parser.add_argument("--dataset", nargs="+", default=["digits"], choices=list(DEFAULT_MAX_ITER),
                        help="datasets to compare on (default digits)")
    parser.add_argument("--dtype", nargs="+", default=["float64", "float32"],
                        choices=["float32", "float64"], help="dtypes to fit in (default both)")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the table here")
    parser.add_argument("--step-budget", action="store_true",
                        help="time one training step's pieces (64-100-10 @200, one thread)")
    args = parser.parse_args(argv)
    if args.step_budget:
        return step_budget()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    from threadpoolctl import threadpool_info, threadpool_limits

    import fastmlp

    if args.threads:
        fastmlp.set_num_threads(args.threads)
        limiter = threadpool_limits(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} on {os.cpu_count()} cores; numpy BLAS threads: "
          f"{[i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']}")
    print(f"hidden_layer_sizes={tuple(args.hidden)}; threads={args.threads or 'default'}; "
          f"repeats={args.repeats} (random_state=0..{args.repeats - 1}: median time, mean accuracy)")
    rows = []
    for dataset in args.dataset:
        X_tr, y_tr, X_te, y_te = load_dataset(dataset)
        max_iter = args.max_iter if args.max_iter is not None else DEFAULT_MAX_ITER[dataset]
        print(f"{dataset}: train {X_tr.shape}, test {X_te.shape}; max_iter={max_iter}")
        hp = dict(hidden_layer_sizes=tuple(args.hidden), max_iter=max_iter)
        for solver in args.solver:
            for dtype in args.dtype:
                data = (X_tr.astype(dtype), y_tr, X_te.astype(dtype), y_te)
                rows.append(compare_cell(dataset, dtype, solver, hp, data, args.repeats))
                r = rows[-1]
                print(f"  done {dataset} {dtype} {solver}: speed-up {r['speedup']:.2f}x", flush=True)
    if args.threads:
        limiter.restore_original_limits()
    summary = print_table(rows)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "step_budget")}
        settings["max_iter"] = {d: args.max_iter if args.max_iter is not None
                                else DEFAULT_MAX_ITER[d] for d in args.dataset}
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "rows": rows, "summary": summary}, f, indent=1)
    return rows


def load_dataset(name):
    """(X_train, y_train, X_test, y_test) in float64; see the module docstring."""
    if name == "digits":
        from fastmlp.datasets import load_digits

        (X_tr, y_tr), (X_te, y_te) = load_digits(normalize=True)
        return np.asarray(X_tr, np.float64), y_tr, np.asarray(X_te, np.float64), y_te
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    X, y = make_classification(n_samples=20000, n_features=50, n_informative=30,
                               n_classes=5, random_state=0)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
    return (X_tr - mean) / std, y_tr, (X_te - mean) / std, y_te


def compare_cell(dataset, dtype, solver, hp, data, repeats):
    """One table row: both libraries fit ``repeats`` times, alternately, on the same data."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastmlp.estimator import MLPClassifier as FastMLP

    X_tr, y_tr, X_te, y_te = data
    names = ("fastmlp", "sklearn")
    times, acc, epochs, losses = ({n: [] for n in names} for _ in range(4))
    for seed in range(repeats):
        initial = []
        for name in names:
            if name == "fastmlp":
                model = FastMLP(random_state=seed, solver=solver, dtype=np.dtype(dtype).type, **hp)
            else:
                model = SkMLP(random_state=seed, solver=solver, **hp)
            if solver == "lbfgs":
                _same_start(model, initial, first=name == "fastmlp")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                t0 = time.perf_counter()
                model.fit(X_tr, y_tr)
                times[name].append(time.perf_counter() - t0)
            acc[name].append(float(model.score(X_te, y_te)))
            epochs[name].append(int(model.n_iter_))
            losses[name].append(float(model.loss_))
    tf, ts = statistics.median(times["fastmlp"]), statistics.median(times["sklearn"])
    row = dict(dataset=dataset, dtype=dtype, solver=solver, n_train=len(X_tr),
               max_iter=hp["max_iter"], fastmlp_s=tf, sklearn_s=ts, speedup=ts / tf,
               fastmlp_acc=statistics.mean(acc["fastmlp"]),
               sklearn_acc=statistics.mean(acc["sklearn"]),
               fastmlp_epochs=statistics.median(epochs["fastmlp"]),
               sklearn_epochs=statistics.median(epochs["sklearn"]),
               fastmlp_loss=statistics.mean(losses["fastmlp"]),
               sklearn_loss=statistics.mean(losses["sklearn"]),
               fastmlp_times=times["fastmlp"], sklearn_times=times["sklearn"])
    row["passes"] = bool(row["speedup"] >= MIN_SPEEDUP
                         and abs(row["fastmlp_acc"] - row["sklearn_acc"]) <= MAX_ACCURACY_GAP)
    return row


def print_table(rows):
    """Print the rows and the summary line; return the summary as a dict."""
    print(f"{'dataset':9} {'solver':6} {'dtype':8} {'fastmlp s':>10} {'sklearn s':>10} "
          f"{'speed-up':>9} {'fastmlp acc':>12} {'sklearn acc':>12} {'epochs f/s':>11} "
          f"{'loss_ f / s':>21} pass")
    for r in rows:
        print(f"{r['dataset']:9} {r['solver']:6} {r['dtype']:8} {r['fastmlp_s']:10.3f} "
              f"{r['sklearn_s']:10.3f} {r['speedup']:8.2f}x {r['fastmlp_acc']:12.4f} "
              f"{r['sklearn_acc']:12.4f} {r['fastmlp_epochs']:>5}/{r['sklearn_epochs']:<5} "
              f"{r['fastmlp_loss']:10.6f}/{r['sklearn_loss']:<10.6f} "
              f"{'yes' if r['passes'] else 'no'}")
    summary = {"min_speedup": min(r["speedup"] for r in rows),
               "all_pass": all(r["passes"] for r in rows),
               "rule": f"speed-up >= {MIN_SPEEDUP:g} and |fastmlp acc - sklearn acc| <= "
                       f"{MAX_ACCURACY_GAP:g} in every cell"}
    print(f"minimum speed-up {summary['min_speedup']:.2f}x over {len(rows)} cells; "
          f"target ({summary['rule']}): {'MET' if summary['all_pass'] else 'NOT met'}")
    return summary


def _same_start(model, initial, first):
    """lbfgs side by side: fastmlp's model (``first``) records its initial weights in
    ``initial`` as it builds its network; sklearn's model is then handed them in order."""
    if first:
        build = model._build_network

        def build_and_keep(*args, **kwargs):
            net = build(*args, **kwargs)
            initial.extend(net.params[f"{k}{i}"].copy()
                           for i in range(1, net.hidden_layer_num + 2) for k in "Wb")
            return net

        model._build_network = build_and_keep
    else:
        arrays = iter(initial)
        model._init_coef = lambda fan_in, fan_out, dtype: (next(arrays).astype(dtype),
                                                           next(arrays).astype(dtype))


def step_budget(repeats=9, calls=200):
    """Median microseconds per call: the step's five GEMMs alone (numpy), fastmlp's fused kernel,
    net.gradient, opt.update, both, and sklearn's own step (_backprop + update_params)."""
    from threadpoolctl import threadpool_limits

    import fastmlp

    fastmlp.set_num_threads(1)
    threadpool_limits(1)
    (X, y), _ = fastmlp.datasets.load_digits()
    y = np.asarray(y, np.intp)
    for dt in (np.float64, np.float32):
        _budget_one(dt, X, y, repeats, calls)


def _budget_one(dt, X, y, repeats, calls):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP

    import fastmlp
    from fastmlp import _backend

    x, t = np.ascontiguousarray(X[:200], dtype=dt), y[:200].copy()
    net = fastmlp.MultiLayerNet(64, [100], 10, seed=0, dtype=dt)
    opt = fastmlp.optimizers.Adam(1e-3, eps=1e-8)   # the estimator's Adam
    grads = net.gradient(x, t)
    opt.update(net.params, grads)
    W1, W2 = net.params["W1"], net.params["W2"]
    h, d = np.ones((200, 100), dt), np.ones((200, 10), dt)
    outs = [np.empty(s, dt) for s in ((200, 100), (200, 10), (200, 100), (100, 10), (64, 100))]

    def gemms():
        np.matmul(x, W1, out=outs[0])
        np.matmul(h, W2, out=outs[1])
        np.matmul(d, W2.T, out=outs[2])
        np.matmul(h.T, d, out=outs[3])
        np.matmul(x.T, h, out=outs[4])

    ws = net._fused.workspace
    Ws, bs = [W1, W2], [net.params["b1"], net.params["b2"]]

    def kernel():
        _backend.mlp_gradient(x, ws.labels, None, None, Ws, bs, ws.hs, ws.mask_bytes, ws.ds,
                              ws.dWs, ws.dbs, 0, 0, 0.0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkMLP(max_iter=1, random_state=0).fit(X.astype(dt), y)
    Y = sk._label_binarizer.transform(t).astype(bool)
    acts, deltas = [x] + [None] * (sk.n_layers_ - 1), [None] * (sk.n_layers_ - 1)
    cg, ig = [np.empty_like(c) for c in sk.coefs_], [np.empty_like(c) for c in sk.intercepts_]
    sk_params = sk.coefs_ + sk.intercepts_

    def sk_step():
        acts[0] = x
        _, c, i = sk._backprop(x, Y, None, acts, deltas, cg, ig)
        sk._optimizer.update_params(sk_params, c + i)

    pieces = {"5 GEMMs (numpy)": gemms, "fastmlp fused kernel": kernel,
              "net.gradient": lambda: net.gradient(x, t),
              "opt.update": lambda: opt.update(net.params, grads),
              "fastmlp step": lambda: opt.update(net.params, net.gradient(x, t)),
              "sklearn step": sk_step}
    res = {k: [] for k in pieces}
    for _ in range(repeats):
        for name, fn in pieces.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            res[name].append((time.perf_counter() - t0) / calls * 1e6)
    print(np.dtype(dt).name, "  ".join(f"{k}: {statistics.median(v):.0f} us"
                                      for k, v in res.items()))


if __name__ == "__main__":
    main()
