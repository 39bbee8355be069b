"""Training-step benchmarks (pytest-benchmark): fastmlp vs fastmlp.reference vs PyTorch.

Run:  pytest bench/bench_train.py --benchmark-only

One SGD step (lr 0.1; forward, softmax cross-entropy, backward, update) of
each network of shared/bench/peers.py, float32 and float64, with the step
definitions of ``fastmlp bench`` (``fastmlp._bench``):

- ``fastmlp``: ``opt.update(net.params, net.gradient(x, t))``, the textbook API;
- ``reference``: the same on ``fastmlp.reference`` (plain numpy);
- ``torch``: ``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.SGD``, its
  intra-op threads set to numpy's BLAS thread count (skipped, with the reason,
  when PyTorch is not installed);
- ``gemm_limit``: the step's matrix products alone at numpy's rate (first
  layer's input gradient skipped): the time no implementation can beat.

Batches cycle through a fixed random data set. ``extra_info["samples_per_s"]``
is batch / median. ``test_alternation`` times a float32 step of
784-100-100-10 @128 alternated with a user-side numpy (128,784)@(784,100)
product, vs each alone (``extra_info["ratio_to_sum"]`` on the pair).

scikit-learn is measured by ``fastmlp bench`` only (its partial_fit has to
take 10 batches per call to time training rather than validation).
"""
import functools
import itertools
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import fastmlp  # installed, or on PYTHONPATH
except ImportError:  # a source checkout with the kernels built in place
    sys.path.insert(0, ROOT)
    import fastmlp  # noqa: F401

from fastmlp._bench.configs import CONFIGS, gemm_work, make_data, network_name, user_matmul
from fastmlp._bench.machine import CpuShare, available_cores, numpy_blas_info, wait_idle
from fastmlp._bench.peers import STEP_MAKERS

NETWORKS = CONFIGS
DTYPES = ["float32", "float64"]
IMPLS = ["fastmlp", "reference", "torch", "gemm_limit"]


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


@functools.cache
def _data(dtype):
    return make_data(dtype)


@functools.cache
def _torch():
    try:
        import torch
    except ImportError as exc:
        return None, f"PyTorch is not installed ({exc})"
    threads = numpy_blas_info().get("num_threads")
    if threads:
        torch.set_num_threads(threads)   # as peers.py: torch uses as many threads as numpy's BLAS
    return torch, None


def _step(impl, sizes, batch, dtype):
    """A callable doing one step per call (cycling through the data)."""
    X, T = _data(dtype)
    if impl == "gemm_limit":
        call, _ = gemm_work(sizes, batch, dtype)
    else:
        if impl == "torch":
            torch, reason = _torch()
            if torch is None:
                pytest.skip(reason)
        maker = STEP_MAKERS["numpy" if impl == "reference" else impl]
        call, per_call = maker(sizes, batch, dtype, X, T)
        assert per_call == 1
    counter = itertools.count()

    def step():
        call(next(counter))
    for _ in range(3):
        step()
    return step


def _cases():
    return [(sizes, batch, d, impl) for sizes, batch in NETWORKS for d in DTYPES for impl in IMPLS]


def _name(sizes, batch):
    return f"{network_name(sizes)}@{batch}"


@pytest.mark.parametrize("sizes, batch, dtype, impl", _cases(),
                         ids=[f"{_name(c[0], c[1])}-{c[2]}-{c[3]}" for c in _cases()])
def test_train_step(benchmark, sizes, batch, dtype, impl):
    step = _step(impl, sizes, batch, dtype)
    benchmark.group = f"train step {_name(sizes, batch)} {dtype}"
    benchmark.extra_info.update(network=network_name(sizes), batch=batch, dtype=dtype,
                                impl=impl)
    benchmark(step)
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        benchmark.extra_info["samples_per_s"] = batch / stats.stats.median


# ---------------------------------------------------------------- alternation

ALT_NET = ([784, 100, 100, 10], 128)
_alone = {}


@pytest.mark.parametrize("impl, what", [("numpy", "matmul"),
                                        ("fastmlp", "step"), ("fastmlp", "alternated"),
                                        ("torch", "step"), ("torch", "alternated")],
                         ids=["numpy-matmul", "fastmlp-step", "fastmlp-alternated",
                              "torch-step", "torch-alternated"])
def test_alternation(benchmark, impl, what):
    sizes, batch = ALT_NET
    matmul = user_matmul()
    if what == "matmul":
        call = functools.partial(matmul, 0)
    else:
        step = _step(impl, sizes, batch, "float32")
        if what == "step":
            call = step
        else:
            def call():
                step()
                matmul(0)
    benchmark.group = (f"alternation: step {_name(sizes, batch)} float32 "
                       f"with numpy (128,784)@(784,100)")
    benchmark.extra_info.update(impl=impl, what=what)
    benchmark(call)
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return
    _alone[impl, what] = med = stats.stats.median
    if what == "alternated" and (impl, "step") in _alone and ("numpy", "matmul") in _alone:
        benchmark.extra_info["ratio_to_sum"] = med / (_alone[impl, "step"]
                                                      + _alone["numpy", "matmul"])
