"""Data-parallel training on this machine: all-reduce time per step, and samples/s of
K ranks x 1 BLAS thread vs one process x all cores.

Run (the driver launches the workers, interleaved, ``--repeats`` times each):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=. python bench/bench_distributed.py

Per network of ``fastmlp bench`` (784-50-10 @100, 784-100-100-10 @128, 784-256-256-10
@256, 784-1024-1024-10 @512) and dtype:

- ``allreduce_ms``: the scaling pass and one in-place ``Allreduce`` of the packed
  gradient buffer (the layout of ``fastmlp._fused.gradient_layout``), as across nodes;
  ``shared_ms``: the same sum in the node's shared-memory window
  (``fastmlp._shared_sum.SharedSum``, the default on one node); each alone, median of
  200 after a barrier;
- ``in_step_ms``: ``DataParallelTrainer.allreduce_seconds`` per step while training
  (the shared window; includes waiting for the slower rank);
- ``dp_samples_s``: ``DataParallelTrainer.train_step`` on K ranks (1 BLAS thread each,
  set by the trainer; the shared window), ``dp_allreduce_samples_s`` the same with
  ``FASTMLP_MPI_SHARED_MEMORY=0``, vs ``single_samples_s``: ``Trainer.train_step`` in
  one process with ``set_num_threads(cores)`` (its fused SGD step); SGD, lr 0.01, random
  data of 16 batches, accuracies on one batch per epoch. Figures are medians over repeats;
  ``ratio`` is the median over repeats of each repeat's dp / single (the two processes
  run minutes apart, so a drift of the shared machine lands on one side);
- ``paired_ratio``: the same two trainers in one job, taking turns burst by burst
  (``PAIRED_BURSTS`` pairs of about ``BURST_SECONDS`` each, the order alternating): the
  K ranks train, then rank 0 alone trains its own copy at ``cores`` threads while the
  other ranks sleep (polling a non-blocking barrier every 0.5 ms, not spinning); every
  rank idles ``SETTLE_SECONDS`` before each burst, so that BLAS threads still spinning
  after the last burst's products are asleep; the median of the pairs' ratios, so both
  sides see the same machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETWORKS = [([50], 100), ([100, 100], 128), ([256, 256], 256), ([1024, 1024], 512)]
DTYPES = ["float32", "float64"]
TARGET_SECONDS = 2.0   # timed training per (network, dtype, variant, repeat)
PAIRED_BURSTS = 20     # pairs of bursts per (network, dtype) in paired_ratio
BURST_SECONDS = 0.1
SETTLE_SECONDS = 0.2   # idle before each burst: OpenBLAS's threads spin a while after a product


def _setup(hidden, batch, dtype):
    import fastmlp
    rng = np.random.default_rng(0)
    x = rng.random((16 * batch, 784)).astype(dtype)
    t = rng.integers(0, 10, 16 * batch)
    return fastmlp.MultiLayerNet(784, hidden, 10, dtype=dtype, seed=0), x, t


def _steps_for(trainer, seconds, comm=None, least=3):
    """Steps of ``trainer`` that take about ``seconds`` (from one timed step after three),
    at least ``least``, agreed over ``comm``."""
    for _ in range(3):
        trainer.train_step()
    start = time.perf_counter()
    trainer.train_step()
    steps = max(least, int(seconds / (time.perf_counter() - start)))
    return steps if comm is None else comm.bcast(steps, root=0)


def _train(make_trainer, batch, comm=None):
    """samples/s of train_step, steps chosen from a timed warm-up (agreed over comm)."""
    tr = make_trainer()
    steps = _steps_for(tr, TARGET_SECONDS, comm, least=5)
    if comm is not None:
        comm.Barrier()
    reduced = getattr(tr, "allreduce_seconds", 0.0)
    start = time.perf_counter()
    for _ in range(steps):
        tr.train_step()
    if comm is not None:
        comm.Barrier()
    elapsed = time.perf_counter() - start
    in_step = (getattr(tr, "allreduce_seconds", 0.0) - reduced) / steps
    return steps * batch / elapsed, in_step


def _sleep_until(request):
    """Wait for a non-blocking MPI request without spinning a core."""
    while not request.Test():
        time.sleep(0.0005)


def _paired_ratio(make_dp, make_single, batch, comm):
    """Median over ``PAIRED_BURSTS`` of (K-rank samples/s) / (rank 0 alone at all cores'
    samples/s), the two timed in turns within one job (see the module docstring)."""
    import fastmlp
    dp = make_dp()
    rank_threads = fastmlp.threads.get_num_threads()
    cores = fastmlp.threads.available_cores()
    single = make_single() if comm.Get_rank() == 0 else None
    n_dp = _steps_for(dp, BURST_SECONDS, comm)
    if single is not None:
        fastmlp.threads.set_num_threads(cores)
        n_single = _steps_for(single, BURST_SECONDS)
        fastmlp.threads.set_num_threads(rank_threads)
    ratios = []
    for burst in range(2 * PAIRED_BURSTS):
        time.sleep(SETTLE_SECONDS)
        if (burst + burst // 2) % 2 == 0:   # dp, single, single, dp, dp, single, ...
            comm.Barrier()
            start = time.perf_counter()
            for _ in range(n_dp):
                dp.train_step()
            comm.Barrier()
            dp_rate = n_dp * batch / (time.perf_counter() - start)
        else:
            if single is not None:
                fastmlp.threads.set_num_threads(cores)
                start = time.perf_counter()
                for _ in range(n_single):
                    single.train_step()
                single_rate = n_single * batch / (time.perf_counter() - start)
                fastmlp.threads.set_num_threads(rank_threads)
            _sleep_until(comm.Ibarrier())
        if burst % 2 == 1 and single is not None:
            ratios.append(dp_rate / single_rate)
    return statistics.median(ratios) if single is not None else None


def _time_collective(run, comm, MPI):
    """Median ms of ``run()`` over 200 calls (after 20 unmeasured), each after a barrier."""
    times = []
    for i in range(220):
        comm.Barrier()
        start = MPI.Wtime()
        run()
        if i >= 20:
            times.append(MPI.Wtime() - start)
    return 1e3 * statistics.median(times)


def worker_mpi():
    from mpi4py import MPI

    from fastmlp._fused import gradient_layout
    from fastmlp._shared_sum import SharedSum
    from fastmlp.distributed import DataParallelTrainer
    comm = MPI.COMM_WORLD
    rows = []
    for hidden, batch in NETWORKS:
        for dtype in DTYPES:
            net, x, t = _setup(hidden, batch, dtype)
            make = lambda: DataParallelTrainer(   # noqa: E731
                net, x, t, x[:batch], t[:batch], epochs=1000, mini_batch_size=batch,
                optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=batch,
                verbose=False, seed=0, comm=comm)
            os.environ["FASTMLP_MPI_SHARED_MEMORY"] = "0"
            allreduce_samples_s = _train(make, batch, comm)[0]
            os.environ["FASTMLP_MPI_SHARED_MEMORY"] = "1"
            samples_s, in_step = _train(make, batch, comm)
            single_net = _setup(hidden, batch, dtype)[0]
            paired = _paired_ratio(make, lambda: _single_trainer(single_net, x, t, batch),
                                   batch, comm)
            length = gradient_layout([784, *hidden, 10], dtype)[2]
            buf = np.zeros(length, dtype)
            shared = SharedSum.get(comm, MPI, length, dtype)

            def allreduce():
                np.multiply(buf, 0.5, out=buf)
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

            rows.append({"net": "-".join(map(str, [784, *hidden, 10])) + f"@{batch}",
                         "dtype": dtype, "bytes": buf.nbytes, "dp_samples_s": samples_s,
                         "dp_allreduce_samples_s": allreduce_samples_s,
                         "in_step_ms": 1e3 * in_step, "paired_ratio": paired,
                         "allreduce_ms": _time_collective(allreduce, comm, MPI),
                         "shared_ms": _time_collective(lambda: shared(0.5), comm, MPI)})
    return rows if comm.Get_rank() == 0 else None


def _single_trainer(net, x, t, batch):
    """One process's Trainer with the data-parallel trainer's settings and batches."""
    import fastmlp
    return fastmlp.Trainer(net, x, t, x[:batch], t[:batch], epochs=1000, mini_batch_size=batch,
                           optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=batch,
                           verbose=False, seed=0, sampling="epoch")


def worker_single():
    import fastmlp
    fastmlp.threads.set_num_threads(fastmlp.threads.available_cores())
    rows = []
    for hidden, batch in NETWORKS:
        for dtype in DTYPES:
            net, x, t = _setup(hidden, batch, dtype)
            rows.append({"single_samples_s": _train(lambda: _single_trainer(net, x, t, batch),
                                                    batch)[0]})
    return rows


def driver(ranks, repeats, out):
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    runs = {"mpi": [], "single": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):   # interleaved: machine drift hits both sides alike
            for kind in ("single", "mpi"):
                path = os.path.join(tmp, f"{kind}{rep}.json")
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--out", path]
                if kind == "mpi":
                    cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "mpi4py"] + cmd[1:]
                subprocess.run(cmd, check=True, env=env, cwd=tmp)
                with open(path) as f:
                    runs[kind].append(json.load(f))
    rows = []
    for i, row in enumerate(runs["mpi"][0]):
        med = lambda kind, key: statistics.median(r[i][key] for r in runs[kind])  # noqa: E731
        row = dict(row, **{key: med("mpi", key) for key in (
            "dp_samples_s", "dp_allreduce_samples_s", "in_step_ms", "allreduce_ms", "shared_ms")},
            paired_ratios=[r[i]["paired_ratio"] for r in runs["mpi"]],
            single_samples_s=med("single", "single_samples_s"))
        # per repeat (interleaved runs), then the median of those ratios
        row["ratio"] = statistics.median(m[i]["dp_samples_s"] / s[i]["single_samples_s"]
                                         for m, s in zip(runs["mpi"], runs["single"]))
        row["ratio_allreduce"] = statistics.median(
            m[i]["dp_allreduce_samples_s"] / s[i]["single_samples_s"]
            for m, s in zip(runs["mpi"], runs["single"]))
        rows.append(row)
    print(f"K = {ranks} ranks x 1 BLAS thread vs 1 process x {os.cpu_count()} threads; "
          f"median of {repeats}")
    print(f"{'network':<22}{'dtype':<9}{'MB':>7}{'allreduce ms':>14}{'shared ms':>11}"
          f"{'in step ms':>12}{'K ranks /s':>12}{'1 proc /s':>12}{'ratio':>7}"
          f"{'ratio (Allreduce)':>19}  paired ratio per repeat")
    for r in rows:
        print(f"{r['net']:<22}{r['dtype']:<9}{r['bytes'] / 1e6:>7.2f}{r['allreduce_ms']:>14.3f}"
              f"{r['shared_ms']:>11.3f}{r['in_step_ms']:>12.3f}{r['dp_samples_s']:>12.0f}"
              f"{r['single_samples_s']:>12.0f}{r['ratio']:>7.2f}{r['ratio_allreduce']:>19.2f}  "
              + " ".join(f"{v:.2f}" for v in r["paired_ratios"]))
    if out:
        with open(out, "w") as f:
            json.dump(rows, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", choices=["mpi", "single"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is None:
        return driver(args.ranks, args.repeats, args.out)
    rows = worker_mpi() if args.worker == "mpi" else worker_single()
    if rows is not None:
        with open(args.out, "w") as f:
            json.dump(rows, f)


if __name__ == "__main__":
    main()
