"""Run the book's own chapter 5/6 scripts, unchanged, against fastmlp (issue 13's target).

"Deep Learning from Scratch" (github.com/oreilly-japan/deep-learning-from-scratch)
ships its scripts in ``ch05/`` and ``ch06/`` and the modules they import in
``common/`` (plus ``ch05/two_layer_net.py`` and ``ch05/layer_naive.py``).
This runner builds, in a temporary directory, a tree in which every one of
those modules is a *plain re-export of fastmlp* — generated from the table
``SHIMS`` below, no line of the book's modules — copies the book's scripts
beside it unchanged, and runs each one in its own process with a timeout,
recording the exit code, the wall time and the last lines of its output.

The book's ``dataset/mnist.py`` downloads MNIST; this machine is offline, so
both trees get a ``dataset/mnist.py`` whose ``load_mnist(normalize, flatten,
one_hot_label)`` calls ``fastmlp.datasets.load_mnist(DIR, ...)`` with
``DIR = /usr/share/datasets/fashion-mnist`` (``--data``): the scripts train
on **Fashion-MNIST, not MNIST** (same format and sizes; lower accuracies).

``--compare`` also runs each script that ran to the end on the book's own ``common`` (the same
dataset shim), both runs with numpy's global generator seeded alike
(``--seed``), and compares what the two runs computed: the numeric globals
the script left (losses, accuracy lists, gradients, ``params``...) and the
data of every line it plotted. Equal to rounding is what the issue asks
wherever both start from the same weights; with fastmlp drawing its weights
from its own generator the trajectories are simply different runs.

Usage (from a source checkout with the kernels built in place)::

    PYTHONPATH=. python bench/book_scripts.py --book /tmp/book [--compare] \
        [--scripts ch06/optimizer_compare_naive.py ...] [--timeout 3600] \
        [--json out.json] [--keep DIR] [--lock /tmp/bench.lock]

``--fill-from-book`` is a diagnostic, not the target: a shim that misses a name
becomes the book's module with fastmlp's names re-exported over it, to see
what fails once the missing names exist.

``--book`` is a checkout of the book's repository (a directory holding
``ch05/``, ``ch06/``, ``common/``) or its git directory (read with
``git archive HEAD``). ``MPLBACKEND=Agg`` is set, so ``plt.show()`` returns
at once. ``--lock FILE`` takes ``flock`` on FILE around each script (do not
combine with an outer ``flock`` on the same file). Exit status: 0 when every
script ran to the end, 1 otherwise.
"""
import argparse
import fcntl
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# Every scripts of ch05/ and ch06/ (the book's own modules two_layer_net.py and
# layer_naive.py are replaced by shims, not run).
SCRIPTS = [
    "ch05/buy_apple.py", "ch05/buy_apple_orange.py", "ch05/gradient_check.py",
    "ch05/train_neuralnet.py",
    "ch06/optimizer_compare_naive.py", "ch06/optimizer_compare_mnist.py",
    "ch06/weight_init_activation_histogram.py", "ch06/weight_init_compare.py",
    "ch06/overfit_weight_decay.py", "ch06/overfit_dropout.py",
    "ch06/batch_norm_test.py", "ch06/batch_norm_gradient_check.py",
    "ch06/hyperparameter_optimization.py",
]

# The book's module -> (the public names it gives the scripts, the fastmlp modules to take
# each from: the first that has it). A name no candidate has is left out of the shim with a
# comment, so the script fails the way a reader's would (ImportError / NameError).
# ``np``: the book's modules bind numpy as ``np`` at module level, and a star import of them
# hands it on (ch06/optimizer_compare_mnist.py uses ``np`` from ``from common.optimizer
# import *`` and imports numpy nowhere else); fastmlp's ``__all__`` does not export ``np``,
# so the shims bind it the same way.
SHIMS = {
    "common/__init__.py": ([], []),
    "common/functions.py": (
        ["identity_function", "step_function", "sigmoid", "sigmoid_grad", "relu", "relu_grad",
         "softmax", "sum_squared_error", "cross_entropy_error", "softmax_loss"],
        ["fastmlp.functions"]),
    "common/layers.py": (
        ["Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "Dropout", "BatchNormalization"],
        ["fastmlp.layers"]),
    "common/util.py": (
        ["smooth_curve", "shuffle_dataset"],
        ["fastmlp.util", "fastmlp.utils", "fastmlp.functions", "fastmlp.datasets", "fastmlp"]),
    "common/optimizer.py": (
        ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"], ["fastmlp.optimizers"]),
    "common/gradient.py": (["numerical_gradient"], ["fastmlp.gradient"]),
    "common/multi_layer_net.py": (["MultiLayerNet"], ["fastmlp"]),
    "common/multi_layer_net_extend.py": (["MultiLayerNetExtend"], ["fastmlp"]),
    "common/trainer.py": (["Trainer"], ["fastmlp"]),
    "ch05/two_layer_net.py": (["TwoLayerNet"], ["fastmlp"]),
    "ch05/layer_naive.py": (["MulLayer", "AddLayer"], ["fastmlp.layers"]),
}
BINDS_NUMPY = {"common/functions.py", "common/layers.py", "common/util.py", "common/optimizer.py",
               "common/gradient.py", "common/multi_layer_net.py",
               "common/multi_layer_net_extend.py", "common/trainer.py"}

DATASET_SHIM = '''\
"""Offline stand-in for the book's dataset/mnist.py (which downloads MNIST): the four IDX
files in {data!r} read by fastmlp.datasets.load_mnist -- Fashion-MNIST, not MNIST."""
from fastmlp.datasets import load_mnist as _load_idx

DATA_DIR = {data!r}


def load_mnist(normalize=True, flatten=True, one_hot_label=False):
    return _load_idx(DATA_DIR, normalize=normalize, flatten=flatten, one_hot_label=one_hot_label)
'''

# Runs one script in a child process as ``python script.py`` would (the script's directory
# first on sys.path, __name__ == "__main__"), after seeding numpy's global generator; then
# saves what it computed: numeric globals and plotted lines (even when it raised).
WRAPPER = r'''
import builtins, sys, traceback
import numpy as np
script, seed, out = sys.argv[1], sys.argv[2], sys.argv[3]
sys.argv = [script]
sys.path[0] = __import__("os").path.dirname(script)
if seed != "none":
    np.random.seed(int(seed))
g = {"__name__": "__main__", "__file__": script, "__builtins__": builtins}
status = 0
try:
    with open(script, encoding="utf-8") as f:
        code = compile(f.read(), script, "exec")
    exec(code, g)
except SystemExit as e:
    status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
except BaseException:
    traceback.print_exc()
    status = 1
arrays = {}
def keep(key, value):
    if isinstance(value, (bool, str, bytes)) or value is None:
        return
    if isinstance(value, np.ndarray) and value.size > 200_000:
        return   # the data sets: not results, and costly to convert
    try:
        a = np.asarray(value, dtype=np.float64)
    except Exception:
        return
    if a.size and a.size <= 200_000:
        arrays[key] = a
for name, value in list(g.items()):
    if name.startswith("_"):
        continue
    if isinstance(value, dict):
        for k, v in value.items():
            keep(f"g|{name}|{k}", v)
    else:
        keep(f"g|{name}", value)
plt = sys.modules.get("matplotlib.pyplot")
if plt is not None:
    for fi, num in enumerate(plt.get_fignums()):
        for ai, ax in enumerate(plt.figure(num).axes):
            for li, line in enumerate(ax.get_lines()):
                keep(f"line|{fi}|{ai}|{li}", line.get_xydata())
np.savez(out, **arrays)
sys.stdout.flush()
sys.exit(status)
'''


def resolve(names, candidates):
    """{name: the first candidate fastmlp module that has it, or None}."""
    importlib.import_module("fastmlp")   # fastmlp itself must import: say why if it does not
    found = {}
    for name in names:
        found[name] = None
        for mod_name in candidates:
            try:
                mod = importlib.import_module(mod_name)
            except ModuleNotFoundError as exc:
                if exc.name != mod_name:   # the module exists but fails to import
                    raise
                continue
            if hasattr(mod, name):
                found[name] = mod_name
                break
    return found


def shim_source(path, names, candidates, book_text=None):
    """The text of one shim module and the resolution of its names. With ``book_text`` (the
    diagnostic ``--fill-from-book``) and a name missing, the shim is the book's module
    followed by the re-exports of the names fastmlp has, which override the book's."""
    found = resolve(names, candidates)
    lines = ['"""Plain re-export of fastmlp in place of the book\'s '
             f'{path} (generated by bench/book_scripts.py)."""']
    if book_text is not None and None in found.values():
        lines = [book_text.decode("utf-8"), "# --fill-from-book: the book's module above; "
                 "fastmlp's names override it below"]
    if path in BINDS_NUMPY:
        lines.append("import numpy as np  # the book's module binds np; a star import hands it on")
    by_module = {}
    for name, mod in found.items():
        if mod is not None:
            by_module.setdefault(mod, []).append(name)
    for mod, ns in by_module.items():
        lines.append(f"from {mod} import {', '.join(ns)}")
    missing = [n for n, m in found.items() if m is None]
    if missing:
        lines.append(f"# not in fastmlp: {', '.join(missing)}")
    return "\n".join(lines) + "\n", found


def book_files(book):
    """{relative path: bytes} of the book's ch05/, ch06/ and common/ (a checkout or a git dir)."""
    book = Path(book)
    files = {}
    if (book / "ch05").is_dir():
        for sub in ("ch05", "ch06", "common"):
            for p in sorted((book / sub).glob("*.py")):
                files[f"{sub}/{p.name}"] = p.read_bytes()
        return files
    listing = subprocess.run(["git", "--git-dir", str(book), "ls-tree", "-r", "--name-only",
                              "HEAD", "ch05", "ch06", "common"],
                             check=True, capture_output=True, text=True).stdout.split()
    for rel in listing:
        if rel.endswith(".py"):
            files[rel] = subprocess.run(["git", "--git-dir", str(book), "show", f"HEAD:{rel}"],
                                        check=True, capture_output=True).stdout
    return files


def build_trees(book, work, data, fill=False):
    """``work/fastmlp`` (shims + the book's scripts) and ``work/book`` (the book as it is);
    both with the offline dataset shim. Returns the shim resolution table."""
    files = book_files(book)
    table = {}
    for tree in ("fastmlp", "book"):
        for rel, blob in files.items():
            if tree == "fastmlp" and (rel.startswith("common/") or rel in SHIMS):
                continue   # fastmlp's tree: not one of the book's modules
            dest = work / tree / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(blob)
        (work / tree / "dataset").mkdir(parents=True, exist_ok=True)
        (work / tree / "dataset" / "__init__.py").write_text("")
        (work / tree / "dataset" / "mnist.py").write_text(DATASET_SHIM.format(data=data))
    for rel, (names, candidates) in SHIMS.items():
        text, found = shim_source(rel, names, candidates, files.get(rel) if fill else None)
        (work / "fastmlp" / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / "fastmlp" / rel).write_text(text)
        table[rel] = found
    return table


def run_one(tree, script, seed, timeout, out_dir, tag, lock):
    """Run one script of ``tree``; a dict of exit code, wall time, output tail and results file."""
    path = tree / script
    stem = f"{tag}_{script.replace('/', '_')[:-3]}"
    npz, log = out_dir / f"{stem}.npz", out_dir / f"{stem}.log"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    lock_file = open(lock, "a") if lock else None
    try:
        if lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        start = time.perf_counter()
        with open(log, "w") as f:
            proc = subprocess.Popen([sys.executable, "-c", WRAPPER, str(path), str(seed), str(npz)],
                                    cwd=path.parent, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                code = "timeout"
        wall = time.perf_counter() - start
    finally:
        if lock_file:
            lock_file.close()
    text = log.read_text(errors="replace").splitlines()
    reason = ""
    if code != 0:
        errors = [ln for ln in text if ln and not ln.startswith(" ") and (
            "Error" in ln or "Exception" in ln)]
        reason = errors[-1] if errors else ("timeout" if code == "timeout"
                                            else (text[-1] if text else "no output"))
    return {"script": script, "exit": code, "wall_s": round(wall, 2), "reason": reason,
            "tail": text[-8:], "results": str(npz) if npz.exists() else None, "log": str(log)}


def compare(a_file, b_file):
    """Per result key present in both runs: max |a-b| / max |b| and where sequences first
    part by more than 1e-6 of their scale."""
    if not (a_file and b_file):
        return {}
    a, b = np.load(a_file), np.load(b_file)
    out = {}
    for key in sorted(set(a.files) & set(b.files)):
        x, y = a[key], b[key]
        if x.shape != y.shape:
            out[key] = {"shape": [list(x.shape), list(y.shape)]}
            continue
        scale = float(np.max(np.abs(y))) or 1.0
        diff = np.abs(x - y)
        d = {"rel": float(np.max(diff)) / scale if diff.size else 0.0}
        if x.ndim == 1 and x.size > 1:
            bad = np.flatnonzero(diff > 1e-6 * scale)
            d["first_apart"] = int(bad[0]) if bad.size else None
        out[key] = d
    out["_only_fastmlp"] = sorted(set(a.files) - set(b.files))
    out["_only_book"] = sorted(set(b.files) - set(a.files))
    return out


def summarize(cmp):
    """One phrase for a comparison: how close the shared results are."""
    keys = [k for k in cmp if not k.startswith("_")]
    if not keys:
        return "nothing to compare"
    shapes = [k for k in keys if "shape" in cmp[k]]
    rels = [cmp[k]["rel"] for k in keys if "rel" in cmp[k]]
    worst = max(rels) if rels else float("nan")
    text = f"{len(keys)} results, max rel diff {worst:.2e}"
    if shapes:
        text += f", {len(shapes)} of another shape"
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--book", required=True, help="the book's checkout or git directory")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                   help="directory of the four IDX files (default: Fashion-MNIST)")
    p.add_argument("--scripts", nargs="*", default=SCRIPTS)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per script")
    p.add_argument("--seed", default="0", help="numpy global seed before each script, or 'none'")
    p.add_argument("--compare", action="store_true", help="also run the book's own common")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--keep", help="build the trees and keep logs/results here (default: a temp dir)")
    p.add_argument("--lock", help="flock this file around each script")
    p.add_argument("--fill-from-book", action="store_true",
                   help="diagnostic, not the issue's target: a shim missing a name is the book's "
                        "module with fastmlp's names re-exported over it (what fails next?)")
    args = p.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="book_scripts_"))
    for tree in ("fastmlp", "book"):
        shutil.rmtree(work / tree, ignore_errors=True)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    table = build_trees(args.book, work, args.data, args.fill_from_book)
    missing = {rel: [n for n, m in found.items() if m is None] for rel, found in table.items()}
    print("shim names not in fastmlp:",
          json.dumps({k: v for k, v in missing.items() if v}, indent=None), flush=True)

    rows = []
    for script in args.scripts:
        row = run_one(work / "fastmlp", script, args.seed, args.timeout, logs, "fastmlp", args.lock)
        if args.compare and row["exit"] == 0:   # only a finished run has results to compare
            book = run_one(work / "book", script, args.seed, args.timeout, logs, "book", args.lock)
            row["book"] = {k: book[k] for k in ("exit", "wall_s", "reason", "tail")}
            row["compare"] = compare(row["results"], book["results"]) if row["exit"] == 0 \
                and book["exit"] == 0 else {}
            row["compare_summary"] = summarize(row["compare"]) if row["compare"] else ""
        rows.append(row)
        extra = f" | book: exit {row['book']['exit']}, {row['book']['wall_s']} s | " \
            f"{row['compare_summary']}" if "book" in row else ""
        print(f"{script}: exit {row['exit']}, {row['wall_s']} s {row['reason']}{extra}", flush=True)

    print("\n| script | exit | wall s | failure |" + (" book exit | book s | comparison |"
                                                        if args.compare else ""))
    print("|---|---|---|---|" + ("---|---|---|" if args.compare else ""))
    for r in rows:
        line = f"| {r['script']} | {r['exit']} | {r['wall_s']} | {r['reason'] or ''} |"
        if args.compare:
            book = r.get("book", {"exit": "not run", "wall_s": ""})
            line += f" {book['exit']} | {book['wall_s']} | {r.get('compare_summary', '')} |"
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps({"data": args.data, "seed": args.seed,
                                               "fill_from_book": args.fill_from_book,
                                               "shims": table, "rows": rows}, indent=1))
    print(f"\ntrees, logs and results in {work}")
    return 0 if all(r["exit"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
