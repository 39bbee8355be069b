"""Per-kernel benchmarks (pytest-benchmark): compiled fastmlp vs fastmlp.reference (numpy).

Run:  pytest bench/bench_kernels.py --benchmark-only
      (add --benchmark-json=FILE to keep the figures; -k Affine to pick a group)

Three families, float32 and float64, at the shapes of the four networks of
shared/bench/peers.py (784-50-10 @100, 784-100-100-10 @128, 784-256-256-10
@256, 784-1024-1024-10 @512):

- ``test_layer``: one forward + backward of a layer object (Affine, Relu,
  Sigmoid, SoftmaxWithLoss) through the public API (validation included),
  ``fastmlp.layers`` ("compiled") vs ``fastmlp.reference.layers``
  ("reference"). Each group holds the two, so pytest-benchmark's relative
  column is the compiled/reference time ratio.
- ``test_gemm``: the GEMM route: ``fastmlp._backend.matmul`` (numpy's BLAS
  called from compiled code) vs numpy's ``@`` (``np.matmul`` into a
  preallocated ``out``), for the three products of an Affine layer (forward
  ``x @ W``, weight gradient ``x.T @ dout``, input gradient ``dout @ W.T``);
  GFLOP/s of the median in ``extra_info["gflops"]``.
- ``test_alternation``: fastmlp's ``Affine.forward`` (128x784 -> 100, float32)
  alternated with a plain numpy ``@`` of the same shape, vs each alone. If
  fastmlp kept a second thread pool the pair would cost many times the sum;
  ``extra_info["ratio_to_sum"]`` of the pair (when both singles ran first in
  the same session) is pair / (affine + matmul).
"""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import fastmlp  # installed, or on PYTHONPATH
except ImportError:  # a source checkout with the kernels built in place
    sys.path.insert(0, ROOT)
    import fastmlp  # noqa: F401

from fastmlp import _backend
from fastmlp import layers as compiled_layers
from fastmlp._bench.configs import CONFIGS
from fastmlp._bench.machine import CpuShare, available_cores, wait_idle
from fastmlp.reference import layers as reference_layers

NETWORKS = CONFIGS   # the four networks of shared/bench/peers.py
DTYPES = ["float32", "float64"]
IMPLS = {"compiled": compiled_layers, "reference": reference_layers}

# (batch, in, out) of every Affine layer of the four networks, in network order
AFFINE_SHAPES = list(dict.fromkeys((n, k, m) for sizes, n in NETWORKS
                                   for k, m in zip(sizes[:-1], sizes[1:])))
# (batch, units) of the hidden activations; (batch, classes) of the loss
HIDDEN_SHAPES = list(dict.fromkeys((n, m) for sizes, n in NETWORKS for m in sizes[1:-1]))
LOSS_SHAPES = [(n, sizes[-1]) for sizes, n in NETWORKS]


@pytest.fixture(autouse=True)
def _quiet_machine(benchmark):
    """With FASTMLP_BENCH_WAIT_IDLE=S, wait (at most S s) until other processes leave the CPU
    idle before each benchmark; always record the CPU they took during it in extra_info."""
    wait = float(os.environ.get("FASTMLP_BENCH_WAIT_IDLE") or 0)
    if wait > 0:
        wait_idle(0.05, wait)
    cpu = CpuShare()
    yield
    benchmark.extra_info["other_processes_cpu_share"] = cpu.others(available_cores())


def _rng():
    return np.random.default_rng(0)


def _shape_id(shape):
    if len(shape) == 3:
        return f"{shape[1]}x{shape[2]}@{shape[0]}"
    return f"{shape[1]}@{shape[0]}"


def _layer_cases():
    cases = []
    for shape in AFFINE_SHAPES:
        cases += [("Affine", shape, d, i) for d in DTYPES for i in IMPLS]
    for layer in ("Relu", "Sigmoid"):
        for shape in HIDDEN_SHAPES:
            cases += [(layer, shape, d, i) for d in DTYPES for i in IMPLS]
    for shape in LOSS_SHAPES:
        cases += [("SoftmaxWithLoss", shape, d, i) for d in DTYPES for i in IMPLS]
    return cases


def _make_layer(module, name, shape, dtype):
    """(layer, forward+backward callable) on fixed random data."""
    rng = _rng()
    if name == "Affine":
        n, k, m = shape
        W = (rng.standard_normal((k, m)) * np.sqrt(2.0 / k)).astype(dtype)
        b = np.zeros(m, dtype)
        x = rng.random((n, k)).astype(dtype)
        dout = rng.standard_normal((n, m)).astype(dtype)
        layer = module.Affine(W, b)

        def fb():
            layer.forward(x)
            return layer.backward(dout)
        return fb
    if name in ("Relu", "Sigmoid"):
        x = rng.standard_normal(shape).astype(dtype)
        dout = rng.standard_normal(shape).astype(dtype)
        layer = getattr(module, name)()

        def fb():
            layer.forward(x)
            return layer.backward(dout)
        return fb
    if name == "SoftmaxWithLoss":
        n, c = shape
        x = (3 * rng.standard_normal(shape)).astype(dtype)
        t = rng.integers(0, c, n)
        layer = module.SoftmaxWithLoss()

        def fb():
            layer.forward(x, t)
            return layer.backward()
        return fb
    raise ValueError(name)


def _affine_flops(shape):
    n, k, m = shape
    return 3 * 2 * n * k * m  # forward, dW and dx


def _median(benchmark):
    stats = getattr(benchmark, "stats", None)
    return stats.stats.median if stats is not None else None


@pytest.mark.parametrize(
    "name, shape, dtype, impl", _layer_cases(),
    ids=[f"{c[0]}-{_shape_id(c[1])}-{c[2]}-{c[3]}" for c in _layer_cases()])
def test_layer(benchmark, name, shape, dtype, impl):
    fb = _make_layer(IMPLS[impl], name, shape, dtype)
    for _ in range(3):
        fb()
    benchmark.group = f"{name} {_shape_id(shape)} {dtype}"
    benchmark.extra_info.update(layer=name, shape=list(shape), dtype=dtype, impl=impl)
    benchmark(fb)
    med = _median(benchmark)
    if med and name == "Affine":
        benchmark.extra_info["gflops"] = _affine_flops(shape) / med / 1e9


# ---------------------------------------------------------------- GEMM route

GEMM_OPS = {
    # op: (a's shape, b's shape, trans_a, trans_b) for a layer (n, k, m)
    "forward x@W": (lambda n, k, m: ((n, k), (k, m), False, False)),
    "dW x.T@dout": (lambda n, k, m: ((n, k), (n, m), True, False)),
    "dx dout@W.T": (lambda n, k, m: ((n, m), (k, m), False, True)),
}


def _gemm_cases():
    return [(shape, op, d, impl) for shape in AFFINE_SHAPES for op in GEMM_OPS for d in DTYPES
            for impl in ("fastmlp", "numpy")]


@pytest.mark.parametrize(
    "shape, op, dtype, impl", _gemm_cases(),
    ids=[f"{_shape_id(c[0])}-{c[1].split()[0]}-{c[2]}-{c[3]}" for c in _gemm_cases()])
def test_gemm(benchmark, shape, op, dtype, impl):
    a_shape, b_shape, trans_a, trans_b = GEMM_OPS[op](*shape)
    rng = _rng()
    a, b = rng.random(a_shape).astype(dtype), rng.random(b_shape).astype(dtype)
    m = a_shape[1] if trans_a else a_shape[0]
    n = b_shape[0] if trans_b else b_shape[1]
    k = a_shape[0] if trans_a else a_shape[1]
    out = np.empty((m, n), dtype)
    if impl == "fastmlp":
        def call():
            return _backend.matmul(a, b, out, trans_a, trans_b)
    else:
        a_op, b_op = (a.T if trans_a else a), (b.T if trans_b else b)

        def call():
            return np.matmul(a_op, b_op, out=out)
    call()
    np.testing.assert_allclose(out, (a.T if trans_a else a) @ (b.T if trans_b else b),
                               rtol=1e-4 if dtype == "float32" else 1e-10)
    benchmark.group = f"GEMM {op} {_shape_id(shape)} {dtype}"
    benchmark.extra_info.update(op=op, m=m, k=k, n=n, dtype=dtype, impl=impl,
                                route="numpy's BLAS from compiled code" if _backend.USE_BLAS
                                else "np.matmul fallback")
    benchmark(call)
    med = _median(benchmark)
    if med:
        benchmark.extra_info["gflops"] = 2 * m * n * k / med / 1e9


# ---------------------------------------------------------------- alternation

ALT_SHAPE = (128, 784, 100)
_alone = {}   # median seconds of the single benchmarks, for the pair's ratio


def _alternation_parts():
    n, k, m = ALT_SHAPE
    rng = _rng()
    W = (rng.standard_normal((k, m)) * np.sqrt(2.0 / k)).astype(np.float32)
    layer = compiled_layers.Affine(W, np.zeros(m, np.float32))
    x = rng.random((n, k), dtype=np.float32)
    a, w = rng.random((n, k), dtype=np.float32), rng.random((k, m), dtype=np.float32)
    out = np.empty((n, m), np.float32)

    def affine():
        return layer.forward(x)

    def matmul():
        return np.matmul(a, w, out=out)
    return affine, matmul


@pytest.mark.parametrize("what", ["affine_forward", "numpy_matmul", "alternated"])
def test_alternation(benchmark, what):
    affine, matmul = _alternation_parts()

    def pair():
        affine()
        matmul()
    call = {"affine_forward": affine, "numpy_matmul": matmul, "alternated": pair}[what]
    for _ in range(3):
        call()
    benchmark.group = f"alternation: fastmlp Affine {_shape_id(ALT_SHAPE)} float32 with numpy @"
    benchmark.extra_info["what"] = what
    benchmark(call)
    med = _median(benchmark)
    if med:
        _alone[what] = med
        if what == "alternated" and {"affine_forward", "numpy_matmul"} <= _alone.keys():
            benchmark.extra_info["ratio_to_sum"] = med / (_alone["affine_forward"]
                                                          + _alone["numpy_matmul"])
