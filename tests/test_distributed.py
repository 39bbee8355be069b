"""fastmlp.distributed: data-parallel training under ``mpiexec -n K`` equals one process
training the same global batches; one packed all-reduce per step; the optional import.

The MPI tests run ``mpiexec -n K python -m mpi4py <script>`` in a subprocess (``-m mpi4py``
aborts the whole job when a rank raises, so a failure cannot hang the test). They are
skipped only when mpi4py is not installed; the CI installs it (``pip install
".[mpi]"``), and a missing ``mpiexec`` beside an installed mpi4py is a failure.
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import threads
from fastmlp._fused import gradient_layout
from _mpi_helpers import mpiexec

HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(
    not HAVE_MPI4PY, reason='mpi4py is not installed (pip install "fastmlp[mpi]"; the CI '
                            "installs it, so these run there)")

# One script per mpiexec job: every configuration of CONFIGS, each rank saving its
# parameters and losses, so a job start (~0.5 s) is paid once per rank count.
SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from mpi4py import MPI
    import fastmlp, fastmlp.reference
    from fastmlp._loop import DivergenceError
    from fastmlp.distributed import DataParallelTrainer

    class CountingComm:
        # MPI.COMM_WORLD with its Allreduce calls recorded
        def __init__(self, comm):
            self._comm, self.buffers = comm, []
        def Allreduce(self, sendbuf, recvbuf, op):
            self.buffers.append(recvbuf)
            return self._comm.Allreduce(sendbuf, recvbuf, op)
        def __getattr__(self, name):
            return getattr(self._comm, name)

    def data(n=60):
        rng = np.random.default_rng(0)
        return rng.standard_normal((n, 12)), rng.integers(0, 3, n)

    def network(cfg, seed):
        module = fastmlp.reference if cfg.get("reference") else fastmlp
        return module.MultiLayerNet(12, [9, 7], 3, weight_decay_lambda=cfg["wd"],
                                    dtype=cfg.get("dtype", "float64"), seed=seed)

    rank = MPI.COMM_WORLD.Get_rank()
    out = {}
    for name, cfg in json.loads(sys.argv[1]).items():
        x, t = data()
        if cfg.get("mode") == "diverge":
            x[cfg["huge_row"]] = 1e308   # finite, but its loss overflows: on one rank only
        comm = CountingComm(MPI.COMM_WORLD)
        net = network(cfg, seed=rank)   # different on every rank until the broadcast
        xs, ts = x, t
        if cfg.get("sharded"):   # each rank holds only its rows of the training set
            from fastmlp._shard import shard_bounds
            lo, hi = shard_bounds(len(x), rank, MPI.COMM_WORLD.Get_size())
            xs, ts = x[lo:hi], t[lo:hi]
        tr = DataParallelTrainer(net, xs, ts, x[:25], t[:25], epochs=50, comm=comm,
                                 mini_batch_size=cfg["batch"], optimizer=cfg["opt"],
                                 optimizer_param={"lr": 0.05}, verbose=False, seed=3,
                                 sharded=cfg.get("sharded", False))
        comm.buffers.clear()
        result = {"shard": tr.shard, "threads": tr.blas_threads}
        try:
            for _ in range(cfg["steps"]):
                tr.train_step()
        except DivergenceError as exc:
            result["diverged_at"] = exc.step
        if cfg.get("mode") == "count":
            ws = net._fused.workspace
            result["allreduces"] = len(comm.buffers)
            result["packed"] = all(b is ws.packed for b in comm.buffers)
            result["in_window"] = (tr._reducer._shared is not None
                                   and ws.packed is tr._reducer._shared.own)
            result["views"] = all(np.shares_memory(net.layers[f"Affine{i}"].dW, ws.packed)
                                  for i in (1, 2, 3))
        result["losses"] = tr.train_loss_list
        result["acc"] = tr.train_acc_list + tr.test_acc_list
        result["params"] = {k: v.tolist() for k, v in net.params.items()}
        out[name] = result
    with open(f"{sys.argv[2]}_{rank}.json", "w") as f:
        json.dump(out, f)
""")

# batch 7: shares of 4+3 on 2 ranks and 2+2+2+1 on 4; 60 samples: 8 epochs ends in 70 steps
CONFIGS = {
    "sgd": {"opt": "SGD", "batch": 7, "wd": 0.01, "steps": 20},
    "adam": {"opt": "Adam", "batch": 7, "wd": 0.01, "steps": 20},
    "adam_epochs": {"opt": "Adam", "batch": 16, "wd": 0.0, "steps": 12},
    "momentum_reference": {"opt": "Momentum", "batch": 7, "wd": 0.01, "steps": 10,
                           "reference": True},
    "f32": {"opt": "Adam", "batch": 9, "wd": 0.01, "steps": 10, "dtype": "float32"},
    # shards: every rank holds 60/K rows; a rank may hold none of a batch (K=4, batch 7)
    "sharded_sgd": {"opt": "SGD", "batch": 7, "wd": 0.01, "steps": 20, "sharded": True},
    "sharded_adam": {"opt": "Adam", "batch": 16, "wd": 0.01, "steps": 12, "sharded": True},
}


def _run(k, configs, tmp_path, shared_memory=True):
    """Run SCRIPT on ``k`` ranks; one dict per rank. ``shared_memory=False``: the ranks
    sum with MPI's ``Allreduce`` (as across machines), not the node's shared window."""
    script = tmp_path / "dp_script.py"
    script.write_text(SCRIPT)
    prefix = tmp_path / "out"
    env = dict(os.environ)   # the installed fastmlp (a CI clone's tree has no .so files)
    env["FASTMLP_MPI_SHARED_MEMORY"] = "1" if shared_memory else "0"
    proc = subprocess.run([mpiexec(), "-n", str(k), sys.executable, "-m", "mpi4py", str(script),
                           json.dumps(configs), str(prefix)],
                          cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(Path(f"{prefix}_{r}.json").read_text()) for r in range(k)]


def _single_process(cfg):
    """One process, the plain Trainer, the same global batches (and its fused SGD)."""
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((60, 12)), rng.integers(0, 3, 60)
    module = fastmlp.reference if cfg.get("reference") else fastmlp
    net = module.MultiLayerNet(12, [9, 7], 3, weight_decay_lambda=cfg["wd"],
                               dtype=cfg.get("dtype", "float64"), seed=0)
    tr = fastmlp.Trainer(net, x, t, x[:25], t[:25], epochs=50, mini_batch_size=cfg["batch"],
                         optimizer=cfg["opt"], optimizer_param={"lr": 0.05}, verbose=False, seed=3,
                         sampling="epoch")
    for _ in range(cfg["steps"]):
        tr.train_step()
    return net.params, tr


@needs_mpi
@pytest.mark.parametrize("k, shared_memory", [(1, True), (2, True), (4, True), (2, False),
                                              (4, False)])
def test_k_ranks_train_as_one_process_on_the_global_batch(k, shared_memory, tmp_path):
    ranks = _run(k, CONFIGS, tmp_path, shared_memory)
    for name, cfg in CONFIGS.items():
        params, tr = _single_process(cfg)
        rtol = 1e-12 if cfg.get("dtype", "float64") == "float64" else 1e-4
        first = ranks[0][name]
        for r, out in enumerate(ranks):
            got = out[name]
            # every rank: bitwise the same parameters, losses and accuracies as rank 0
            assert got["params"] == first["params"] and got["losses"] == first["losses"], (name, r)
            assert got["acc"] == first["acc"], (name, r)
            if not cfg.get("sharded"):   # the rows of each batch this rank gathers
                lo, hi = got["shard"]
                assert hi - lo in (cfg["batch"] // k, -(-cfg["batch"] // k))
        for key, want in params.items():
            have = np.asarray(first["params"][key])
            scale = float(np.abs(want).max())
            assert float(np.abs(have - want).max()) <= rtol * scale, (name, key)
        np.testing.assert_allclose(first["losses"], tr.train_loss_list, rtol=rtol)
        assert first["acc"] == tr.train_acc_list + tr.test_acc_list, name


@needs_mpi
def test_one_allreduce_per_step_of_the_fused_workspace_buffer(tmp_path):
    # 5 steps of 7 from 60 samples: no epoch end (whose accuracies add two all-reduces)
    cfg = {"count": {"opt": "Adam", "batch": 7, "wd": 0.01, "steps": 5, "mode": "count"}}
    for out in _run(2, cfg, tmp_path, shared_memory=False):
        got = out["count"]
        assert got["allreduces"] == 5
        assert got["packed"] and got["views"] and not got["in_window"]


@needs_mpi
def test_on_one_node_the_fused_gradients_are_computed_in_the_shared_window(tmp_path):
    # no Allreduce at all: the gradients are summed in the window the workspace writes
    cfg = {"count": {"opt": "Adam", "batch": 7, "wd": 0.01, "steps": 5, "mode": "count"}}
    for out in _run(2, cfg, tmp_path, shared_memory=True):
        got = out["count"]
        assert got["allreduces"] == 0
        assert got["in_window"] and got["views"]


@needs_mpi
def test_a_loss_not_finite_on_one_rank_stops_every_rank_before_the_update(tmp_path):
    # the whole set is one batch: row 50 is in rank 1's share only; nothing is applied
    cfg = {"diverge": {"opt": "SGD", "batch": 60, "wd": 0.0, "steps": 3, "mode": "diverge",
                       "huge_row": 50}}
    ranks = _run(2, cfg, tmp_path)
    assert [r["diverge"]["diverged_at"] for r in ranks] == [1, 1]
    assert ranks[0]["diverge"]["params"] == ranks[1]["diverge"]["params"]
    assert ranks[0]["diverge"]["losses"] == []


def test_without_mpi4py_fastmlp_imports_and_the_entry_points_name_the_extra():
    code = textwrap.dedent("""
        import sys
        sys.modules["mpi4py"] = None          # as if not installed
        import numpy as np
        import fastmlp, fastmlp.distributed as d
        net = fastmlp.TwoLayerNet(4, 3, 2, seed=0)
        x, t = np.zeros((4, 4)), np.zeros(4, int)
        for call in (lambda: d.DataParallelTrainer(net, x, t, x, t), d.set_rank_threads):
            try:
                call()
            except ImportError as exc:
                assert 'pip install "fastmlp[mpi]"' in str(exc), exc
            else:
                raise AssertionError("no ImportError")
        assert "mpi4py" not in [m for m in sys.modules if sys.modules[m] is not None]
        print("ok")
    """)
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tempfile.gettempdir(), env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_fused_gradients_are_views_of_one_zero_padded_packed_buffer():
    net = fastmlp.MultiLayerNet(13, [9, 5], 3, weight_decay_lambda=0.1, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 13))
    grads = net.gradient(x, np.arange(6) % 3)
    ws = net._fused.workspace
    shapes, offsets, length = gradient_layout([13, 9, 5, 3], np.float64)
    assert ws.packed.shape == (length,) and ws.packed.ctypes.data % 64 == 0
    covered = np.zeros(length, bool)
    for (key, g), shape, offset in zip(grads.items(), shapes, offsets):
        assert g.shape == shape and np.shares_memory(g, ws.packed)
        assert (g.ctypes.data - ws.packed.ctypes.data) // 8 == offset
        covered[offset:offset + g.size] = True
    assert not ws.packed[~covered].any()          # padding and extra slots: zeros
    assert np.shares_memory(ws.extra, ws.packed) and not covered[-8:].any()


def test_threads_per_process_shares_the_cores():
    assert threads.threads_per_process(1, cores=2) == 2
    assert threads.threads_per_process(2, cores=2) == 1
    assert threads.threads_per_process(3, cores=2) == 1
    assert threads.threads_per_process(2, cores=8) == 4
    with pytest.raises(ValueError):
        threads.threads_per_process(0)
    cores = threads.available_cores()
    try:
        with pytest.warns(RuntimeWarning, match="processes share"):
            assert threads.set_threads_for_processes(cores + 1) == 1
        threads.set_num_threads(None)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert threads.set_threads_for_processes(1) == cores
            assert threads.get_num_threads() == cores
    finally:
        threads.set_num_threads(None)


FINALIZE_SCRIPT = textwrap.dedent("""
    import numpy as np
    from mpi4py import MPI
    import fastmlp
    from fastmlp.distributed import DataParallelTrainer
    rng = np.random.default_rng(0)
    x, t = rng.random((64, 12)), rng.integers(0, 3, 64)
    net = fastmlp.MultiLayerNet(12, [9], 3, seed=0)
    tr = DataParallelTrainer(net, x, t, x[:8], t[:8], epochs=2, mini_batch_size=8,
                             verbose=False, seed=0)
    tr.train_step()
    row = tr._reducer._shared.own
    assert net._fused.workspace.packed is row   # computing in the window
    # a second trainer of the same shape reuses the window: the row moves to its network
    other = fastmlp.MultiLayerNet(12, [9], 3, seed=1)
    tr2 = DataParallelTrainer(other, x, t, x[:8], t[:8], epochs=2, mini_batch_size=8,
                              verbose=False, seed=0)
    assert tr2._reducer._shared.own is row and other._fused.gradient_buffer is row
    assert net._fused.gradient_buffer is None and net._fused.workspace is None
    tr2.train_step()
    tr.train_step()   # the first trainer still trains (its gradients copied into the row)
    tr.check_parameters()
    net, tr = other, tr2
    MPI.Finalize()   # an MPI may unmap its windows here
    grads = net.gradient(x[:5], t[:5])
    assert not any(np.shares_memory(g, row) for g in grads.values())
    want = fastmlp.MultiLayerNet.from_config(net.config(), net.params).gradient(x[:5], t[:5])
    assert all((grads[k] == want[k]).all() for k in want)
    print("ok")
""")


@needs_mpi
def test_after_mpi_finalize_the_network_computes_in_its_own_memory(tmp_path):
    script = tmp_path / "finalize.py"
    script.write_text(FINALIZE_SCRIPT)
    env = dict(os.environ, FASTMLP_MPI_SHARED_MEMORY="1")
    proc = subprocess.run([mpiexec(), "-n", "2", sys.executable, str(script)],
                          cwd=tempfile.gettempdir(), env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.count("ok") == 2, proc.stdout + proc.stderr
