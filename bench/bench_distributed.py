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
  data of 16 batches, accuracies on one batch per epoch. Figures are medians over repeats.
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


def _setup(hidden, batch, dtype):
    import fastmlp
    rng = np.random.default_rng(0)
    x = rng.random((16 * batch, 784)).astype(dtype)
    t = rng.integers(0, 10, 16 * batch)
    return fastmlp.MultiLayerNet(784, hidden, 10, dtype=dtype, seed=0), x, t


def _train(make_trainer, batch, comm=None):
    """samples/s of train_step, steps chosen from a timed warm-up (agreed over comm)."""
    tr = make_trainer()
    for _ in range(3):
        tr.train_step()
    start = time.perf_counter()
    tr.train_step()
    steps = max(5, int(TARGET_SECONDS / (time.perf_counter() - start)))
    if comm is not None:
        steps = comm.bcast(steps, root=0)
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
            length = gradient_layout([784, *hidden, 10], dtype)[2]
            buf = np.zeros(length, dtype)
            shared = SharedSum.get(comm, MPI, length, dtype)

            def allreduce():
                np.multiply(buf, 0.5, out=buf)
                comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

            rows.append({"net": "-".join(map(str, [784, *hidden, 10])) + f"@{batch}",
                         "dtype": dtype, "bytes": buf.nbytes, "dp_samples_s": samples_s,
                         "dp_allreduce_samples_s": allreduce_samples_s,
                         "in_step_ms": 1e3 * in_step,
                         "allreduce_ms": _time_collective(allreduce, comm, MPI),
                         "shared_ms": _time_collective(lambda: shared(0.5), comm, MPI)})
    return rows if comm.Get_rank() == 0 else None


def worker_single():
    import fastmlp
    fastmlp.threads.set_num_threads(fastmlp.threads.available_cores())
    rows = []
    for hidden, batch in NETWORKS:
        for dtype in DTYPES:
            net, x, t = _setup(hidden, batch, dtype)
            make = lambda: fastmlp.Trainer(   # noqa: E731
                net, x, t, x[:batch], t[:batch], epochs=1000, mini_batch_size=batch,
                optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=batch,
                verbose=False, seed=0, sampling="epoch")   # the data-parallel trainer's batches
            rows.append({"single_samples_s": _train(make, batch)[0]})
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
          f"{'ratio (Allreduce)':>19}")
    for r in rows:
        print(f"{r['net']:<22}{r['dtype']:<9}{r['bytes'] / 1e6:>7.2f}{r['allreduce_ms']:>14.3f}"
              f"{r['shared_ms']:>11.3f}{r['in_step_ms']:>12.3f}{r['dp_samples_s']:>12.0f}"
              f"{r['single_samples_s']:>12.0f}{r['ratio']:>7.2f}{r['ratio_allreduce']:>19.2f}")
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
