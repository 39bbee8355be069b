"""The run of ``fastmlp bench``: options checked, machine recorded, rows measured, output written.

``run(args)`` is what the CLI calls with the options of
``fastmlp._bench.options.add_arguments``; it returns the exit status.
Progress goes to stderr, the header and the tables to stdout, the records to
``--json`` (rewritten after every row, so a long run keeps what it measured)
and the chart to ``--plot``.
"""
import datetime
import json
import os
import sys
import textwrap

from .._oversubscription import oversubscribed
from .configs import LR, N_ROWS, SKLEARN_BATCHES, network_name
from .machine import CpuShare, machine_info, peer_versions, wait_idle
from .measure import bench_predict, bench_train
from .options import BenchError, resolve
from .report import WIDTH, header_text, plot, print_tables, summary
from .timing import BUSY_LIMIT, SETTLE_SECONDS, slice_count


class Progress:
    """The progress on stderr, keeping count of the column it is at so that nothing passes
    WIDTH: a row's figures go on the same line while they fit, else on the next one."""

    def __init__(self):
        self.column, self.after_item = 0, False

    def __call__(self, text):
        if "\n" not in text and self.column + len(text) > WIDTH:   # e.g. many repeats' dots
            text = "\n    " + text
        print(text, end="", file=sys.stderr, flush=True)
        last = text.rfind("\n")
        self.column = len(text) - last - 1 if last >= 0 else self.column + len(text)
        self.after_item = self.after_item and last < 0

    def item(self, text):
        """``text`` on this line (after "; " if another item is there), or on a new indented
        line where it would pass WIDTH."""
        sep = "; " if self.after_item else " "
        self(sep + text if self.column + len(sep) + len(text) <= WIDTH else "\n    " + text)
        self.after_item = True


def run(args):
    """Run ``fastmlp bench`` with parsed ``args``; print the tables; return the exit status."""
    try:
        return _run(args)
    except BenchError as exc:
        print(f"fastmlp bench: error: {exc}", file=sys.stderr)
        return 1


def _warn(text):
    """A warning on stderr, wrapped at the tables' width (continuation lines indented)."""
    print(textwrap.fill(f"fastmlp bench: warning: {text}", WIDTH, subsequent_indent="    ",
                        break_on_hyphens=False, break_long_words=False), file=sys.stderr)


def _run(args):
    names, configs, dtypes, seconds, activations = resolve(args)
    if os.environ.get("OPENBLAS_CORETYPE"):
        _warn(f"OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is "
              "set: numpy's OpenBLAS runs that kernel instead of the best one for this CPU, so "
              "every figure (and the GEMM limit) is off. For a fair run: "
              "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastmlp bench")

    info = machine_info()      # before torch/sklearn load their own pools
    pool = info["blas"].get("num_threads") or 1
    busy = oversubscribed(pool)   # the same rule as fastmlp train's and fit's warning
    if busy is not None:
        _warn(f"other processes keep {busy[0]:.1f} cores busy (1-minute load average) beside "
              f"{pool} BLAS threads on {busy[1]} cores: they compete for the CPU, and "
              "BLAS thread pools that wait for a descheduled thread make every figure noisy "
              "(compare ratios within this run only)")
    info["peers"] = peer_versions(names)
    if not args.only:   # by default, the peers that import: leave out the others' columns
        info["absent_peers"] = [n for n in names if info["peers"].get(n, "") is None]
        names = [n for n in names if n not in info["absent_peers"]]
    if args.predict and "fastmlp" in names:
        info["peers"].update(peer_versions(["onnxruntime"]))
    blas_threads = info["blas"].get("num_threads")
    if "torch" in names and info["peers"].get("torch"):
        import torch
        if blas_threads:
            torch.set_num_threads(blas_threads)
        info["torch_threads"] = torch.get_num_threads()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    info["date"] = date
    settings = {"seconds": seconds, "slice_seconds": seconds / slice_count(seconds),
                "settle_seconds": SETTLE_SECONDS,
                "repeats": args.repeats, "peers": names, "dtypes": dtypes,
                "configs": [{"sizes": s, "batch": b} for s, b in configs], "lr": LR,
                "activations": activations,
                "n_rows": N_ROWS, "sklearn_batches_per_call": SKLEARN_BATCHES,
                "alternate": bool(args.alternate), "predict": bool(args.predict),
                "wait_idle": args.wait_idle}
    print(header_text(info, settings), flush=True)

    log = Progress()
    idle = None
    if args.wait_idle:
        def idle():
            share = wait_idle(BUSY_LIMIT, args.wait_idle)
            if share is not None and share >= BUSY_LIMIT:
                log("!")   # waited in vain: this repeat runs on a busy machine
    cpu = CpuShare()
    train_rows, predict_rows = [], []

    def collect():
        machine = {k: v for k, v in info.items() if k != "date"}
        out = {"date": date, "argv": list(sys.argv), "machine": machine, "settings": settings,
               "train": train_rows}
        if args.predict:
            out["predict"] = predict_rows
        return out

    def save_partial():   # a long run on a busy machine keeps what it has measured so far
        if args.json:
            with open(args.json, "w") as f:
                json.dump(dict(collect(), complete=False), f, indent=1)

    for sizes, batch in configs:
        for dtype in dtypes:
            log(f"{network_name(sizes)} @{batch} {dtype} ")
            rows = bench_train(sizes, batch, dtype, names, seconds, args.repeats, args.alternate,
                               log, idle, activations)
            train_rows.extend(rows)
            for r in rows:
                log.item((f"{r['activation']}: " if len(rows) > 1 else "") + summary(r))
            log("\n")
            save_partial()
    if args.predict:
        for sizes, _ in configs:
            for dtype in dtypes:
                log(f"predict {network_name(sizes)} {dtype} ")
                rows = bench_predict(sizes, dtype, names, seconds, args.repeats, log, idle)
                predict_rows.extend(rows)
                for r in rows:
                    log.item(f"@{r['batch']}: " + summary(r))
                log("\n")
                save_partial()

    info["other_processes_cpu_share"] = cpu.others(info["cores"])
    result = collect()
    print_tables(info, names, train_rows, predict_rows, args.alternate, args.predict)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(result, complete=True), f, indent=1)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0
