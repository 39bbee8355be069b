"""Operations of data-parallel training: sharded data, ``fastmlp train --distributed``,
faults (a failing rank ends the job, never hangs it) and checkpoint/resume.

The MPI tests launch ``mpiexec -n 2 python -m mpi4py ...`` (MPICH's wheel from
``pip install "fastmlp[mpi]"``) and are skipped when mpi4py or mpiexec is missing.
Every launch has a 60 s timeout: a hang is a failure, not a stuck CI job.
"""
import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastmlp
from fastmlp._checkpoint import STATE_SUFFIX, load_checkpoint
from fastmlp._loop import ShuffledStream
from fastmlp._shard import ShardedStream, ShardLayout, check_shard, shard_bounds
from fastmlp._sigint import critical_section
from _mpi_helpers import mpiexec

TIMEOUT = 60


def _mpiexec():
    """mpiexec (the mpi extra's, beside python, else on PATH), or None."""
    try:
        return mpiexec()
    except AssertionError:
        return None


def _have_mpi():
    return importlib.util.find_spec("mpi4py") is not None and _mpiexec() is not None


needs_mpi = pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and mpiexec "
                               '(pip install ".[mpi]")')


def test_mpi_is_installed_where_required():
    """CI (``.ci/run`` sets FASTMLP_REQUIRE_MPI=1) installs the mpi extra: skipping the MPI
    tests there would hide that they no longer run."""
    if os.environ.get("FASTMLP_REQUIRE_MPI") != "1":
        pytest.skip("FASTMLP_REQUIRE_MPI is not set")
    import mpi4py  # noqa: F401
    assert _mpiexec(), "mpi4py is installed but no mpiexec was found (pip install mpich)"


def _env():
    # the installed fastmlp (a CI clone's tree has no .so files)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return env


def _launch(args, n=2, cwd=None, wait=True):
    """``mpiexec -n n python -m mpi4py ARGS``: (returncode, stdout, stderr, seconds)."""
    cmd = [_mpiexec(), "-n", str(n), sys.executable, "-m", "mpi4py", *args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    if not wait:
        return proc
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd} hung for {TIMEOUT} s\n{out}\n{err}")
    return proc.returncode, out, err, time.monotonic() - start


def _params(path):
    return fastmlp.load(path).params


# ---------------------------------------------------------------- shards


@pytest.mark.parametrize("n, size", [(10, 3), (7, 7), (3, 5), (0, 2), (60000, 4), (1438, 3)])
def test_shard_bounds_cover_once_in_order(n, size):
    bounds = [shard_bounds(n, r, size) for r in range(size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    lengths = [hi - lo for lo, hi in bounds]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
    # the same rule as numpy.array_split (and fastmlp.distributed's batch shares)
    assert lengths == [len(a) for a in np.array_split(np.arange(n), size)]


@pytest.mark.parametrize("shard, error", [
    ((2, 2), ValueError), ((-1, 2), ValueError), ((0, 0), ValueError), ((0,), TypeError),
    ((0.0, 2), TypeError), ((True, 2), TypeError), ("ab", TypeError), (3, TypeError)])
def test_bad_shard_is_named(shard, error):
    with pytest.raises(error, match="shard"):
        check_shard(shard)
    with pytest.raises(error, match="shard"):
        fastmlp.datasets.load_digits(shard=shard)


def test_sharded_digits_concatenate_to_the_whole():
    (x, t), (xt, _) = fastmlp.datasets.load_digits()
    parts = [fastmlp.datasets.load_digits(shard=(r, 3)) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate([p[0][0] for p in parts]), x)
    np.testing.assert_array_equal(np.concatenate([p[0][1] for p in parts]), t)
    for p in parts:   # the test set whole on every rank
        np.testing.assert_array_equal(p[1][0], xt)


@pytest.mark.parametrize("counts, batch", [([5, 4, 4], 4), ([13], 5), ([0, 6, 7], 13),
                                           ([3, 3], 1), ([7, 0], 3)])
def test_sharded_stream_is_the_global_stream(counts, batch):
    """Over any shard lengths, the ranks' batches together are exactly the single-process
    ShuffledStream's batches of the same seed: nothing dropped, nothing twice."""
    n = sum(counts)
    x = np.arange(n, dtype=np.float64)[:, None] * [1.0, -1.0]
    t = np.arange(n) % 10
    whole = ShuffledStream(x, t, batch, np.random.default_rng(7), np.float64)
    ranks = []
    for r in range(len(counts)):
        layout = ShardLayout(counts, r)
        ranks.append(ShardedStream(x[layout.start:layout.stop], t[layout.start:layout.stop],
                                   layout, batch, np.random.default_rng(7), np.float64))
    crit = critical_section()
    seen = []
    for _ in range(3 * n // batch + 2):
        ref = whole.draw(crit)
        want = ref.x[:, 0].copy()
        whole.commit()
        got = []
        for s in ranks:
            b = s.draw(crit)
            assert b.weight == b.x.shape[0]
            got.append(b.x[:, 0])
            s.commit()
        got = np.concatenate(got)
        assert sorted(got) == sorted(want)
        seen.extend(want)   # the per-batch check above ties the ranks to it
    # every pass over the data sees each sample once
    full = len(seen) // n * n
    for k in range(0, full, n):
        assert sorted(seen[k:k + n]) == list(range(n))
    assert all(np.array_equal(s.perm, whole.perm) and s.pos == whole.pos for s in ranks)


def test_shard_layout_checks():
    with pytest.raises(ValueError):
        ShardLayout([3, -1], 0)
    with pytest.raises(ValueError, match="rank"):
        ShardLayout([3, 1], 2)
    layout = ShardLayout([2, 0, 3], 2)
    assert (layout.start, layout.stop, layout.total) == (2, 5, 5)
    np.testing.assert_array_equal(layout.select([4, 0, 2]), [2, 0])


# ---------------------------------------------------------------- checkpoints (one process)


def _train(tmp_path, *extra):
    from fastmlp.cli import main
    assert main(["train", "--quiet", "--hidden", "20", "--batch-size", "50", *extra]) == 0


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_resume_gives_the_uninterrupted_bits(tmp_path, optimizer):
    ref, res, ck = tmp_path / "ref.fmlp", tmp_path / "res.fmlp", tmp_path / "ck.fmlp"
    common = ["--optimizer", optimizer, "--lr-decay", "0.9", "--batch-size", "48"]
    _train(tmp_path, "--epochs", "3", "--save", str(ref), *common)
    _train(tmp_path, "--epochs", "1", "--checkpoint", str(ck), *common)
    _, opt, state = load_checkpoint(ck)
    from fastmlp.cli import DEFAULT_LR
    assert state["current_epoch"] == 1 and opt.lr == pytest.approx(0.9 * DEFAULT_LR[optimizer])
    _train(tmp_path, "--epochs", "3", "--resume", str(ck), "--save", str(res), *common)
    a, b = _params(ref), _params(res)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_settings_and_damage(tmp_path, capsys):
    from fastmlp.cli import main
    ck = tmp_path / "ck.fmlp"
    _train(tmp_path, "--epochs", "1", "--checkpoint", str(ck))
    assert main(["train", "--quiet", "--hidden", "30", "--batch-size", "50",
                 "--resume", str(ck)]) == 1
    assert "hidden=[20]" in capsys.readouterr().err
    ck.write_bytes(ck.read_bytes()[:-10])
    assert main(["train", "--quiet", "--hidden", "20", "--batch-size", "50",
                 "--resume", str(ck)]) == 1
    assert "not the one" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "none")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_crash_before_the_final_rename_resumes_from_next(tmp_path):
    ck = tmp_path / "ck.fmlp"
    _train(tmp_path, "--epochs", "1", "--checkpoint", str(ck))
    os.replace(ck, str(ck) + ".next")   # as if killed between the state and the model rename
    ck.write_bytes(b"old model")
    _, _, state = load_checkpoint(ck)
    assert state["current_epoch"] == 1


def test_distributed_without_mpi4py_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "from fastmlp.cli import main\n"
            "raise SystemExit(main(['train', '--distributed', '--epochs', '1']))")
    proc = subprocess.run([sys.executable, "-c", code], check=False, env=_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 1
    assert 'pip install "fastmlp[mpi]"' in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- under mpiexec

TRAIN = ["-m", "fastmlp", "train", "--distributed", "--hidden", "64", "--batch-size", "40"]


@needs_mpi
def test_distributed_cli_rank0_only_and_matches_one_process(tmp_path):
    rc, out, err, _ = _launch([*TRAIN, "--epochs", "2", "--save", "d.fmlp"], cwd=tmp_path)
    assert rc == 0, err
    # rank 0 only: one summary line (the final accuracy once: no book-style block), one line
    # per epoch
    assert out.count("\ntest acc 0.") == 1 and out.count("Final Test Accuracy") == 0
    assert out.count("=== epoch:2") == 1
    assert "distributed: 2 ranks" in out
    _train(tmp_path, "--hidden", "64", "--batch-size", "40", "--epochs", "2",
           "--save", str(tmp_path / "one.fmlp"))
    a, b = _params(tmp_path / "one.fmlp"), _params(tmp_path / "d.fmlp")
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=1e-12 * np.abs(a[k]).max())


FAULT = textwrap.dedent("""
    import os, signal, sys, time
    from mpi4py import MPI
    import fastmlp.distributed as d
    from fastmlp.cli import main

    mode, rank = sys.argv[1], MPI.COMM_WORLD.Get_rank()
    victim = 0 if mode.endswith("0") else 1
    take = d.DataParallelTrainer._take_step

    def failing(self, *a):   # the victim fails at step 20, the other waits in the all-reduce
        if rank == victim and self.current_iter == 20:
            with open("fault-time", "w") as fh:
                fh.write(repr(time.time()))
            if mode == "raise":
                raise RuntimeError("injected fault")
            if mode == "exit":
                sys.exit(3)
            if mode == "os_exit":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGKILL)
        return take(self, *a)

    d.DataParallelTrainer._take_step = failing
    raise SystemExit(main(["train", "--distributed", "--quiet", "--epochs", "50"]))
""")


def run_fault(tmp_path, mode, via_mpi4py=True):
    """Launch a 2-rank job whose rank 1 (rank 0 for a mode ending in 0) fails; (exit status, seconds from fault to job end,
    seconds of the whole launch)."""
    script = tmp_path / "fault.py"
    script.write_text(FAULT)
    args = [str(script), mode]
    if not via_mpi4py:   # plain python: fastmlp's own handler must abort the job
        cmd = [_mpiexec(), "-n", "2", sys.executable, *args]
        start = time.monotonic()
        proc = subprocess.run(cmd, check=False, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                              timeout=TIMEOUT)
        rc, total = proc.returncode, time.monotonic() - start
    else:
        rc, _, _, total = _launch(args, cwd=tmp_path)
    ended = time.time()
    fault_at = float((tmp_path / "fault-time").read_text())
    return rc, ended - fault_at, total


@needs_mpi
@pytest.mark.parametrize("mode, via", [("raise", True), ("raise", False), ("exit", True),
                                       ("exit", False), ("os_exit", True), ("os_exit", False),
                                       ("kill", True), ("kill0", True)])
def test_a_failing_rank_ends_the_job(tmp_path, mode, via):
    rc, after_fault, total = run_fault(tmp_path, mode, via)
    print(f"fault {mode} ({'python -m mpi4py' if via else 'python'}): status {rc}, "
          f"job ended {after_fault:.2f} s after the fault ({total:.2f} s in all)")
    assert rc != 0
    assert after_fault < 10


@needs_mpi
def test_killed_job_resumes_to_the_uninterrupted_bits(tmp_path):
    run = [*TRAIN, "--quiet", "--epochs", "12", "--hidden", "256"]
    rc, _, err, _ = _launch([*run, "--save", "ref.fmlp"], cwd=tmp_path)
    assert rc == 0, err
    proc = _launch([*run, "--checkpoint", "ck.fmlp"], cwd=tmp_path, wait=False)
    state = tmp_path / ("ck.fmlp" + STATE_SUFFIX)
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and json.loads(state.read_text())["current_epoch"] >= 1:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the job ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    epoch = load_checkpoint(tmp_path / "ck.fmlp")[2]["current_epoch"]
    assert 1 <= epoch < 12
    rc, out, err, _ = _launch([*TRAIN, "--epochs", "12", "--hidden", "256", "--resume",
                               "ck.fmlp", "--save", "res.fmlp"], cwd=tmp_path)
    assert rc == 0, err
    assert f"resumed from ck.fmlp: epoch {epoch}" in out
    a, b = _params(tmp_path / "ref.fmlp"), _params(tmp_path / "res.fmlp")
    assert all(np.array_equal(a[k], b[k]) for k in a)
