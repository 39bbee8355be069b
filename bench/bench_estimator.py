"""fastmlp.MLPClassifier vs sklearn.neural_network.MLPClassifier on digits, side by side.

Same hyper-parameters, same train/test split, fits alternated within each
repeat so both see the same machine load. Repeat r uses random_state=r for
both; the table shows the median fit time and the mean test accuracy over the
repeats. With ``--solver lbfgs`` sklearn starts from fastmlp's initial weights (its
``_init_coef`` is handed them), so both run the same deterministic full-batch fit and the
table also shows both final losses. Usage:

    python bench/bench_estimator.py [--repeats 3] [--threads N] [--max-iter 200] [--solver adam lbfgs]
    python bench/bench_estimator.py --step-budget   # one step's cost, piece by piece (1 thread)
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
    parser.add_argument("--solver", nargs="+", default=["adam"],
                        help="one row pair per solver (adam, sgd, lbfgs)")
    parser.add_argument("--step-budget", action="store_true",
                        help="time one training step's pieces (64-100-10 @200, one thread)")
    args = parser.parse_args(argv)
    if args.step_budget:
        return step_budget()

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP
    from threadpoolctl import threadpool_info, threadpool_limits

    import fastmlp
    from fastmlp.datasets import load_digits
    from fastmlp.estimator import MLPClassifier as FastMLP

    # fastmlp's embedded digits, the book's ((x_train, t_train), (x_test, t_test)), scaled to [0, 1]
    (X_tr, y_tr), (X_te, y_te) = load_digits(normalize=True)
    X_tr, X_te = np.asarray(X_tr, np.float64), np.asarray(X_te, np.float64)
    hp = dict(hidden_layer_sizes=tuple(args.hidden), max_iter=args.max_iter)
    if args.threads:
        fastmlp.set_num_threads(args.threads)
        limiter = threadpool_limits(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} on {os.cpu_count()} cores; numpy BLAS threads: "
          f"{[i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']}")
    print(f"digits: train {X_tr.shape}, test {X_te.shape}; {hp}; threads="
          f"{args.threads or 'default'}; repeats={args.repeats} (random_state=0..{args.repeats - 1}: "
          f"median time, mean accuracy)")
    rows = []
    for solver, dtype in ((s, d) for s in args.solver for d in (np.float64, np.float32)):
        a, b = X_tr.astype(dtype), X_te.astype(dtype)
        times = {"fastmlp": [], "sklearn": []}
        acc = {"fastmlp": [], "sklearn": []}
        epochs = {"fastmlp": [], "sklearn": []}
        losses = {"fastmlp": [], "sklearn": []}
        for seed in range(args.repeats):
            initial = []
            for name, cls in (("fastmlp", FastMLP), ("sklearn", SkMLP)):
                model = cls(random_state=seed, solver=solver, **hp)
                if solver == "lbfgs":
                    _same_start(model, initial, first=name == "fastmlp")
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    t0 = time.perf_counter()
                    model.fit(a, y_tr)
                    times[name].append(time.perf_counter() - t0)
                acc[name].append(model.score(b, y_te))
                epochs[name].append(model.n_iter_)
                losses[name].append(model.loss_)
        tf, ts = statistics.median(times["fastmlp"]), statistics.median(times["sklearn"])
        rows.append((solver, np.dtype(dtype).name, tf, ts, ts / tf,
                     statistics.mean(acc["fastmlp"]), statistics.mean(acc["sklearn"]),
                     statistics.median(epochs["fastmlp"]), statistics.median(epochs["sklearn"]),
                     statistics.mean(losses["fastmlp"]), statistics.mean(losses["sklearn"])))
    print(f"{'solver':7} {'dtype':8} {'fastmlp s':>10} {'sklearn s':>10} {'speed-up':>9} "
          f"{'fastmlp acc':>12} {'sklearn acc':>12} {'epochs f/s':>11} {'loss_ f / s':>21}")
    for r in rows:
        print(f"{r[0]:7} {r[1]:8} {r[2]:10.3f} {r[3]:10.3f} {r[4]:8.1f}x {r[5]:12.4f} "
              f"{r[6]:12.4f} {r[7]:>5}/{r[8]:<5} {r[9]:10.6f}/{r[10]:<10.6f}")
    if args.threads:
        limiter.restore_original_limits()
    return rows


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
