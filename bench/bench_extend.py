"""Dropout + batch normalisation: step cost against a plain step, PyTorch, and Fashion-MNIST.

Part 1 (``--steps``): samples/s of one SGD training step at 784-256-256-10 @256, float32 and
float64, side by side in one run (bursts of steps interleaved, medians):

- fastmlp plain: ``MultiLayerNet`` (ReLU), ``net.train_step(x, t, SGD)``;
- fastmlp extend: ``MultiLayerNetExtend(use_dropout=True, use_batchnorm=True)``, same step
  (dropout and batch norm inside the fused compiled call);
- the textbook API for both (``opt.update(net.params, net.gradient(x, t))``);
- PyTorch with the same layers (Linear, [BatchNorm1d, ReLU, Dropout], Linear), SGD step,
  ``torch.set_num_threads`` = numpy's BLAS threads.

Part 2 (``--fashion PATH``): a fastmlp MLP with batch norm and dropout on Fashion-MNIST, and
PyTorch with the same recipe: test accuracy per epoch and wall time.

Run with ``flock /tmp/bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``.
"""
import argparse
import json
import subprocess
import sys
import time

import numpy as np

import fastmlp


def _torch_threads():
    """torch with as many threads as numpy's BLAS has (peers.py's rule)."""
    import torch
    torch.set_num_threads(fastmlp.get_num_threads())
    return torch


def torch_model(sizes, dtype, extend, ratio=0.5):
    torch = _torch_threads()
    torch.manual_seed(0)
    mods = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            if extend:
                mods.append(torch.nn.BatchNorm1d(sizes[i + 1], eps=1e-6, momentum=0.1))
            mods.append(torch.nn.ReLU())
            if extend:
                mods.append(torch.nn.Dropout(ratio))
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    return torch.nn.Sequential(*mods).to(tdt)


def make_steps(sizes, batch, dtype, X, T, impl):
    """{name: step(j)} for ``impl`` 'fastmlp' or 'torch' (each timed in its own process:
    PyTorch's OpenMP pool spins after a step and slows numpy's BLAS threads beside it)."""
    steps = {}
    for name, extend in (("plain", False), ("extend", True)):
        if impl == "fastmlp":
            nets = [fastmlp.MultiLayerNetExtend(sizes[0], sizes[1:-1], sizes[-1], use_dropout=True,
                                                use_batchnorm=True, dtype=dtype, seed=0)
                    if extend else
                    fastmlp.MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], dtype=dtype, seed=0)
                    for _ in range(2)]
            opt = fastmlp.optimizers.SGD(lr=0.01)
            steps[f"fastmlp_{name}"] = (lambda j, net=nets[0], opt=opt:
                                        net.train_step(X[j:j + batch], T[j:j + batch], opt))
            steps[f"book_api_{name}"] = (lambda j, net=nets[1], opt=opt:
                                         opt.update(net.params, net.gradient(X[j:j + batch],
                                                                             T[j:j + batch])))
            continue
        torch = _torch_threads()
        model = torch_model(sizes, dtype, extend)
        model.train()
        topt = torch.optim.SGD(model.parameters(), lr=0.01)
        lossf = torch.nn.CrossEntropyLoss()
        Xt, Tt = torch.from_numpy(X), torch.from_numpy(T.astype(np.int64))

        def tstep(j, model=model, topt=topt):
            topt.zero_grad(set_to_none=True)
            lossf(model(Xt[j:j + batch]), Tt[j:j + batch]).backward()
            topt.step()
        steps[f"torch_{name}"] = tstep
    return steps


def bursts(steps, n_bursts, burst, n_rows, batch):
    """Per step, the samples/s of each of ``n_bursts`` bursts of ``burst`` steps, the steps'
    bursts interleaved (so a busy moment of the machine hits every step alike)."""
    for f in steps.values():
        for _ in range(3):
            f(0)   # warm-up: buffers, BLAS pool
    rates, j = {k: [] for k in steps}, 0
    for _ in range(n_bursts):
        for k, f in steps.items():
            t0 = time.perf_counter()
            for _ in range(burst):
                f((j * batch) % (n_rows - batch))
                j += 1
            rates[k].append(burst * batch / (time.perf_counter() - t0))
    return rates


def _data(dtype):
    rng = np.random.default_rng(1)
    return rng.random((8192, 784)).astype(dtype), rng.integers(0, 10, 8192)


def time_impl(impl, dtype, n_bursts, burst, threads):
    """Interleaved bursts of every step of ``impl``: {name: [samples/s per burst]}."""
    fastmlp.set_num_threads(threads)
    if impl == "torch":
        _torch_threads()
    sizes, batch = [784, 256, 256, 10], 256
    X, T = _data(dtype)
    return bursts(make_steps(sizes, batch, dtype, X, T, impl), n_bursts, burst, len(X), batch)


def bench_steps(repeats, burst, threads):
    for dtype in (np.float32, np.float64):
        runs = time_impl("fastmlp", dtype, repeats, burst, threads)
        child = subprocess.run(   # PyTorch in its own process (its OpenMP pool spins)
            [sys.executable, __file__, "--torch-child", np.dtype(dtype).name, "--repeats",
             str(repeats), "--burst", str(burst), "--threads", str(threads)],
            capture_output=True, text=True, check=True)
        runs.update(json.loads(child.stdout))
        med = {k: float(np.median(v)) for k, v in runs.items()}
        ratio = [p / e for p, e in zip(runs["fastmlp_plain"], runs["fastmlp_extend"])]
        row = {"config": "784-256-256-10 @256", "dtype": np.dtype(dtype).name,
               "threads": threads, "bursts": repeats, "steps_per_burst": burst,
               "samples_per_s_median": {k: round(v) for k, v in med.items()},
               "extend_step_cost_vs_plain": round(med["fastmlp_plain"] / med["fastmlp_extend"], 3),
               "extend_cost_per_burst_median": round(float(np.median(ratio)), 3),
               "book_api_extend_cost_vs_plain": round(med["book_api_plain"]
                                                      / med["book_api_extend"], 3),
               "extend_vs_torch_extend": round(med["fastmlp_extend"] / med["torch_extend"], 2),
               "plain_vs_torch_plain": round(med["fastmlp_plain"] / med["torch_plain"], 2),
               "bursts_samples_per_s": {k: [round(x) for x in v] for k, v in runs.items()}}
        print(json.dumps(row), flush=True)


def fashion(path, epochs, batch, lr, hidden, ratio, optimizer, dtype, seed, lr_decay=1.0):
    (x_train, t_train), (x_test, t_test) = fastmlp.datasets.load_mnist(path)
    x_train, x_test = x_train.astype(dtype), x_test.astype(dtype)
    t_train, t_test = t_train.astype(np.intp), t_test.astype(np.intp)
    sizes = [784, *hidden, 10]
    recipe = {"sizes": sizes, "batch_norm": True, "dropout": ratio, "optimizer": optimizer,
              "lr": lr, "lr_decay_per_epoch": lr_decay, "batch": batch, "epochs": epochs,
              "dtype": np.dtype(dtype).name}
    print(json.dumps({"recipe": recipe}), flush=True)
    n = len(x_train)
    # fastmlp
    net = fastmlp.MultiLayerNetExtend(784, hidden, 10, use_dropout=True, dropout_ration=ratio,
                                      use_batchnorm=True, dtype=dtype, seed=seed)
    opt = (fastmlp.optimizers.Adam(lr=lr) if optimizer == "adam"
           else fastmlp.optimizers.Momentum(lr=lr, momentum=0.9))
    rng = np.random.default_rng(seed)
    accs, t_train_s = [], 0.0
    for epoch in range(epochs):
        perm = rng.permutation(n)
        xs, ts = x_train[perm], t_train[perm]
        t0 = time.perf_counter()
        for j in range(0, n - batch + 1, batch):
            net.train_step(xs[j:j + batch], ts[j:j + batch], opt)
        t_train_s += time.perf_counter() - t0
        opt.lr *= lr_decay
        accs.append(round(net.accuracy(x_test, t_test), 4))
    print(json.dumps({"impl": "fastmlp", "test_acc": accs, "train_seconds": round(t_train_s, 2)}),
          flush=True)
    # PyTorch, the same recipe (its Dropout scales by 1/(1-p) while training, the book's by
    # (1-p) at test: the same model up to that scale)
    torch = _torch_threads()
    model = torch_model(sizes, dtype, True, ratio)
    topt = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
            else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    lossf = torch.nn.CrossEntropyLoss()
    Xt, Tt = torch.from_numpy(x_train), torch.from_numpy(t_train.astype(np.int64))
    Xte = torch.from_numpy(x_test)
    accs, t_train_s = [], 0.0
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        perm = torch.from_numpy(rng.permutation(n))
        xs, ts = Xt[perm], Tt[perm]
        model.train()
        t0 = time.perf_counter()
        for j in range(0, n - batch + 1, batch):
            topt.zero_grad(set_to_none=True)
            lossf(model(xs[j:j + batch]), ts[j:j + batch]).backward()
            topt.step()
        t_train_s += time.perf_counter() - t0
        for group in topt.param_groups:
            group["lr"] *= lr_decay
        model.eval()
        with torch.no_grad():
            pred = model(Xte).argmax(1).numpy()
        accs.append(round(float((pred == t_test).mean()), 4))
    print(json.dumps({"impl": "torch", "test_acc": accs, "train_seconds": round(t_train_s, 2)}),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", action="store_true", help="part 1: step cost and PyTorch")
    ap.add_argument("--repeats", type=int, default=15, help="bursts per step (median)")
    ap.add_argument("--burst", type=int, default=20, help="steps per burst")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fashion", metavar="PATH", help="part 2: Fashion-MNIST from PATH")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, nargs="+", default=[512, 256])
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--optimizer", choices=["adam", "momentum"], default="adam")
    ap.add_argument("--lr-decay", type=float, default=1.0, help="lr factor after each epoch")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--torch-child", metavar="DTYPE", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.torch_child:
        print(json.dumps(time_impl("torch", np.dtype(a.torch_child).type, a.repeats, a.burst,
                                   a.threads)))
        return
    if a.steps:
        bench_steps(a.repeats, a.burst, a.threads)
    if a.fashion:
        fashion(a.fashion, a.epochs, a.batch, a.lr, a.hidden, a.dropout, a.optimizer,
                np.dtype(a.dtype).type, a.seed, a.lr_decay)


if __name__ == "__main__":
    main()
