"""Activation costs, side by side in one run: the fused training step per hidden activation,
and the Sigmoid/Tanh layers alone against fastmlp.reference's.

Run (one benchmark at a time on a shared machine):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_activations.py --repeats 5

Table 1: samples/s of ``net.train_step(x, t, SGD(lr=0.1))`` (forward, backward and the SGD
update fused into one compiled call) of 784-100-100-10 @128 and 784-256-256-10 @256, float32
and float64, at relu, sigmoid, tanh and identity, all timed in the same repeats, taking turns
in 0.1 s slices; each activation's median as a multiple of relu's. Table 2: forward + backward of the compiled
``Sigmoid``/``Tanh`` layer against the numpy reference layer on an (N, M) hidden output.
Medians of ``--repeats`` runs of ``--seconds`` each. (``fastmlp bench --activations ...``
times the textbook step, ``opt.update(net.params, net.gradient(x, t))``, the same way.)
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import fastmlp
except ImportError:  # a source checkout with the kernels built in place
    sys.path.insert(0, ROOT)
    import fastmlp

from fastmlp import layers as L
from fastmlp import reference as R
from fastmlp._bench.configs import batch_start, make_data
from fastmlp._bench.machine import wait_idle
from fastmlp._bench.timing import BUSY_LIMIT, Rate, interleave, median

CONFIGS = [([784, 100, 100, 10], 128), ([784, 256, 256, 10], 256)]
ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity"]


def one_pool(name):
    """interleave's group: every task here runs on numpy's BLAS pool (or none), so all take
    turns in slices."""
    return "fastmlp"


def _log(text):
    print(text, end="", file=sys.stderr, flush=True)


def step_task(sizes, batch, dtype, activation, X, T):
    net = fastmlp.MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], activation=activation,
                                weight_init_std="he" if activation == "relu" else "xavier",
                                dtype=dtype, seed=0)
    # identity networks diverge at lr 0.1 on this data; NaN arithmetic would skew the time
    opt = fastmlp.optimizers.SGD(lr=0.1 if activation != "identity" else 0.001)

    def step(i):
        j = batch_start(i, batch)
        net.train_step(X[j:j + batch], T[j:j + batch], opt)
    return Rate(step, batch)


def layer_task(cls, x, dout):
    def call(_):
        layer = cls()
        layer.forward(x)
        layer.backward(dout)
    return Rate(call, x.size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--wait-idle", type=float, default=0, metavar="S",
                        help="as fastmlp bench: wait (at most S s) for a quiet machine before "
                             "each repeat and redo repeats other processes disturbed")
    parser.add_argument("--no-layers", action="store_true", help="only the training steps")
    args = parser.parse_args(argv)
    idle = (lambda: wait_idle(BUSY_LIMIT, args.wait_idle)) if args.wait_idle else None
    print(f"fastmlp {fastmlp.__version__}; median of {args.repeats} interleaved runs of "
          f"{args.seconds:g} s")
    print("\nFused train_step (SGD), samples/s, and each activation / relu:")
    print(f"{'network @batch':22} {'dtype':8} " + " ".join(f"{a:>10}" for a in ACTIVATIONS)
          + "   " + " ".join(f"{a + '/relu':>13}" for a in ACTIVATIONS[1:]))
    for sizes, batch in CONFIGS:
        for dtype in ("float32", "float64"):
            X, T = make_data(dtype)
            tasks = {a: step_task(sizes, batch, np.dtype(dtype).type, a, X, T)
                     for a in ACTIVATIONS}
            runs, busy, _ = interleave(tasks, args.repeats, args.seconds, _log, idle,
                                       group=one_pool)
            rate = {a: median(runs[a]) for a in ACTIVATIONS}
            _log("\n")
            name = "-".join(map(str, sizes)) + f" @{batch}"
            print(f"{name:22} {dtype:8} " + " ".join(f"{rate[a]:10,.0f}" for a in ACTIVATIONS)
                  + "   " + " ".join(f"{rate[a] / rate['relu']:13.2f}" for a in ACTIVATIONS[1:])
                  + "   (others' CPU share per repeat: "
                  + ", ".join("?" if b is None else f"{100 * b:.0f}%" for b in busy) + ")")
    if args.no_layers:
        return
    print("\nLayer forward + backward, elements/s: compiled / numpy reference:")
    print(f"{'layer':8} {'shape':12} {'dtype':8} {'compiled':>14} {'reference':>14} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for name in ("Sigmoid", "Tanh"):
        for shape in ((128, 100), (256, 256), (512, 1024)):
            for dtype in (np.float32, np.float64):
                x = rng.normal(0, 2, shape).astype(dtype)
                dout = rng.normal(0, 1, shape).astype(dtype)
                tasks = {"compiled": layer_task(getattr(L, name), x, dout),
                         "reference": layer_task(getattr(R, name), x, dout)}
                runs, _, _ = interleave(tasks, args.repeats, args.seconds, _log, idle,
                                        group=one_pool)
                _log("\n")
                c, r = median(runs["compiled"]), median(runs["reference"])
                print(f"{name:8} {str(shape):12} {np.dtype(dtype).name:8} {c:14,.0f} {r:14,.0f} "
                      f"{c / r:6.2f}")


if __name__ == "__main__":
    main()
