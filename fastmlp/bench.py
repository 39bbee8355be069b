"""``fastmlp bench``: training-step throughput of fastmlp and its peers, side by side.

Measures samples/s of one SGD training step (forward, loss, backward, update;
lr 0.1) of the four networks of ``shared/bench/peers.py`` in float32 and
float64, for:

- ``fastmlp``: the textbook API, ``opt.update(net.params, net.gradient(x, t))``;
- ``numpy``: the same API on ``fastmlp.reference`` (plain numpy);
- ``torch``: ``nn.Sequential`` of ``Linear``/``ReLU``, ``CrossEntropyLoss``,
  ``optim.SGD`` (when importable; its intra-op threads set to numpy's BLAS
  thread count);
- ``sklearn``: ``MLPClassifier.partial_fit`` on 10 batches per call (one call
  per batch would time sklearn's per-call validation), counted as 10 steps.

and, in the same run, the GEMM-bound limit of each network: the samples/s a
step would reach doing nothing but its matrix products (forward ``x @ W``,
``x.T @ dout``, ``dout @ W.T`` except for the first layer, whose input
gradient training does not need) at the rate numpy's BLAS reaches on exactly
those shapes. Each peer's share of that limit is reported.

Every figure is the median of ``--repeats`` timed runs; within a repeat the
peers (and the limit) run one after the other, in an order that rotates from
repeat to repeat, so a drift of the machine hits them all alike. Rows of the
batches cycle through one fixed random data set, as in peers.py.

Options add an alternation test (a training step alternated with a user-side
numpy product: do the thread pools coexist?) and an inference test (predict
at batch 1, 100 and 10 000, fastmlp vs ``torch`` under ``no_grad``).
"""
import argparse
import datetime
import gc
import json
import os
import platform
import sys
import time

import numpy as np

# (layer sizes, batch) of the four networks of shared/bench/peers.py
CONFIGS = [([784, 50, 10], 100), ([784, 100, 100, 10], 128),
           ([784, 256, 256, 10], 256), ([784, 1024, 1024, 10], 512)]
PEERS = ["fastmlp", "numpy", "torch", "sklearn"]
PEER_LABELS = {"fastmlp": "fastmlp", "numpy": "numpy (fastmlp.reference)",
               "torch": "PyTorch", "sklearn": "scikit-learn"}
PEER_ALIASES = {"reference": "numpy", "pytorch": "torch", "scikit-learn": "sklearn"}
DTYPES = ["float32", "float64"]
PREDICT_BATCHES = [1, 100, 10000]
N_ROWS = 20000            # rows of the random data set the batches cycle through
SKLEARN_BATCHES = 10      # batches per partial_fit call
LR = 0.1
ALTERNATE_SHAPE = (128, 784, 100)   # the user's numpy product: (128, 784) @ (784, 100), float32

PLOT_HINT = "pip install fastmlp[plot]  (or: pip install matplotlib)"


class BenchError(Exception):
    """A problem with the arguments, reported in one line (exit status 1)."""


# ---------------------------------------------------------------- arguments

def add_arguments(parser):
    """Add the options of ``fastmlp bench`` to an argparse parser."""
    parser.add_argument("--quick", action="store_true",
                        help="short timed runs (0.1 s instead of 0.5 s): noisy, for a first look")
    parser.add_argument("--seconds", type=float, default=None, metavar="S",
                        help="length of one timed run (overrides --quick)")
    parser.add_argument("--repeats", type=int, default=3, metavar="R",
                        help="timed runs per cell; the median is reported")
    parser.add_argument("--only", default="", metavar="NAMES",
                        help="comma-separated peers among " + ", ".join(PEERS)
                        + " (default: all that import)")
    parser.add_argument("--configs", default="", metavar="LIST",
                        help="comma-separated networks: an index 1-4 of the standard four, "
                             "their name (784-100-100-10), or any SIZES@BATCH such as "
                             "784-64-10@32 (default: the standard four)")
    parser.add_argument("--dtypes", default="float32,float64", metavar="LIST",
                        help="comma-separated dtypes among float32, float64")
    parser.add_argument("--alternate", action="store_true",
                        help="also time each float32 step alternated with a user-side numpy "
                             "(128, 784) @ (784, 100) float32 product, as a multiple of the "
                             "two timed alone (1.0: they coexist; >> 1: thread pools fight)")
    parser.add_argument("--predict", action="store_true",
                        help="also time inference at batch 1, 100 and 10000: fastmlp predict "
                             "vs torch model(x) under no_grad")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="S",
                        help="on a shared machine: before each repeat wait (at most S seconds) "
                             "until other processes use < 5%% of the CPU, and redo a repeat "
                             "during which they took more (at most 3 times as many as --repeats)")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="write every measurement, the machine and the settings as JSON")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="bar chart of samples/s per network and dtype (needs matplotlib)")
    return parser


def _names(text, known, aliases, what):
    if not text:
        return list(known)
    chosen = []
    for raw in text.split(","):
        name = raw.strip().lower()
        name = aliases.get(name, name)
        if name not in known:
            raise BenchError(f"unknown {what} {raw.strip()!r}; choose among {', '.join(known)}")
        if name not in chosen:
            chosen.append(name)
    return [n for n in known if n in chosen]


def network_name(sizes):
    return "-".join(str(s) for s in sizes)


def parse_configs(text):
    """[(sizes, batch)] from the --configs text."""
    if not text:
        return [(list(s), b) for s, b in CONFIGS]
    by_name = {network_name(s): (s, b) for s, b in CONFIGS}
    configs = []
    for raw in text.split(","):
        item = raw.strip()
        if item.isdigit() and 1 <= int(item) <= len(CONFIGS):
            sizes, batch = CONFIGS[int(item) - 1]
        elif item in by_name:
            sizes, batch = by_name[item]
        elif "@" in item:
            net, _, b = item.partition("@")
            try:
                sizes, batch = [int(s) for s in net.split("-")], int(b)
            except ValueError:
                sizes, batch = [], 0
            if len(sizes) < 2 or min(sizes) < 1 or batch < 1:
                raise BenchError(f"bad config {item!r}: expected SIZES@BATCH such as 784-64-10@32")
            if sizes[0] != 784 or sizes[-1] != 10:
                raise BenchError(f"bad config {item!r}: the data has 784 features and 10 classes")
        else:
            raise BenchError(f"unknown config {item!r}: give 1-{len(CONFIGS)}, one of "
                             f"{', '.join(by_name)}, or SIZES@BATCH")
        if batch * SKLEARN_BATCHES > N_ROWS or max(PREDICT_BATCHES) > N_ROWS:
            raise BenchError(f"batch {batch} too large for the {N_ROWS}-row data set")
        configs.append((list(sizes), batch))
    return configs


def _check_plot_path(path):
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise BenchError(f"--plot needs matplotlib, which is not installed: {PLOT_HINT}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise BenchError(f"--plot {path}: directory {parent} does not exist")


# ---------------------------------------------------------------- timing

def timed(call, seconds, min_calls=5, warmup=3):
    """Calls per second of ``call(i)`` (i = 0, 1, ...), timed for about ``seconds``."""
    for i in range(warmup):
        call(i)
    gc.collect()
    n, t0 = 0, time.perf_counter()
    while True:
        call(n)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= min_calls:
            return n / elapsed


def median(values):
    return float(np.median(values)) if values else float("nan")


# ---------------------------------------------------------------- the data and the steps

def make_data(dtype, seed=1):
    """The fixed random data set: X (N_ROWS, 784) in [0, 1) of ``dtype``, labels (N_ROWS,) int64."""
    rng = np.random.default_rng(seed)
    X = rng.random((N_ROWS, 784)).astype(dtype)
    T = rng.integers(0, 10, N_ROWS)
    return X, T


def _start(i, rows):
    """First row of batch number ``i`` when each batch takes ``rows`` rows: cycles the data."""
    return (i * rows) % (N_ROWS - rows + 1)


def _textbook_step(network_class, sgd_class, sizes, batch, dtype, X, T):
    """``opt.update(net.params, net.gradient(x, t))``: the textbook step peers.py times."""
    net = network_class(sizes[0], sizes[1:-1], sizes[-1], dtype=dtype, seed=0)
    opt = sgd_class(lr=LR)

    def step(i):
        j = _start(i, batch)
        opt.update(net.params, net.gradient(X[j:j + batch], T[j:j + batch]))
    return step, 1


def _fastmlp_step(sizes, batch, dtype, X, T):
    from .networks import MultiLayerNet
    from .optimizers import SGD
    return _textbook_step(MultiLayerNet, SGD, sizes, batch, dtype, X, T)


def _numpy_step(sizes, batch, dtype, X, T):
    from .reference import MultiLayerNet
    from .reference.optimizers import SGD
    return _textbook_step(MultiLayerNet, SGD, sizes, batch, dtype, X, T)


def _torch_model(sizes, dtype):
    import torch
    torch.manual_seed(0)
    mods = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods).to(torch.float32 if dtype == "float32" else torch.float64)


def _torch_step(sizes, batch, dtype, X, T):
    import torch
    model = _torch_model(sizes, dtype)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, Tt = torch.from_numpy(X), torch.from_numpy(T)

    def step(i):
        j = _start(i, batch)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(Xt[j:j + batch]), Tt[j:j + batch]).backward()
        opt.step()
    return step, 1


def _sklearn_step(sizes, batch, dtype, X, T):
    import warnings
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), solver="sgd", learning_rate_init=LR,
                        momentum=0.0, batch_size=batch, alpha=0.0, max_iter=1, shuffle=False,
                        random_state=0)
    rows = batch * SKLEARN_BATCHES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X[:batch], T[:batch], classes=np.arange(sizes[-1]))

    def step(i):
        j = _start(i, rows)
        clf.partial_fit(X[j:j + rows], T[j:j + rows])
    return step, SKLEARN_BATCHES


STEP_MAKERS = {"fastmlp": _fastmlp_step, "numpy": _numpy_step, "torch": _torch_step,
               "sklearn": _sklearn_step}


def gemm_work(sizes, batch, dtype):
    """One step's matrix products at numpy's rate: (call, flops per step)."""
    rng = np.random.default_rng(0)
    layers, flops = [], 0
    for i, (k, m) in enumerate(zip(sizes[:-1], sizes[1:])):
        x = rng.random((batch, k)).astype(dtype)
        W = rng.random((k, m)).astype(dtype)
        d = rng.random((batch, m)).astype(dtype)
        out, dW, dx = np.empty((batch, m), dtype), np.empty((k, m), dtype), np.empty((batch, k), dtype)
        layers.append((i > 0, x, W, d, out, dW, dx))
        flops += 2 * batch * k * m * (3 if i > 0 else 2)

    def call(_):
        for need_dx, x, W, d, out, dW, dx in layers:
            np.matmul(x, W, out=out)          # forward
            np.matmul(x.T, d, out=dW)         # weight gradient
            if need_dx:
                np.matmul(d, W.T, out=dx)     # input gradient, not needed for the first layer
    return call, flops


def user_matmul():
    m, k, n = ALTERNATE_SHAPE
    rng = np.random.default_rng(2)
    a = rng.random((m, k), dtype=np.float32)
    w = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    return lambda i: np.matmul(a, w, out=out)


# ---------------------------------------------------------------- the machine

def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas_info():
    """threadpoolctl's record of the BLAS numpy uses (the one fastmlp multiplies with), or {}."""
    from threadpoolctl import threadpool_info
    from . import _backend
    path = _backend.numpy_blas_path()
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    blas = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    for d in blas:
        if path is not None and os.path.realpath(d["filepath"]) == os.path.realpath(path):
            return d
    for d in blas:
        if d["filepath"].startswith(os.path.join(numpy_dir, "numpy")):
            return d
    return blas[0] if blas else {}


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def machine_info():
    from . import __version__, _backend, threads
    blas = numpy_blas_info()
    cores = available_cores()
    info = {
        "cpu": _cpu_model(), "cores": cores, "logical_cpus": os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "fastmlp": __version__,
        "blas": {k: blas.get(k) for k in ("internal_api", "version", "architecture",
                                           "threading_layer", "num_threads", "filepath")},
        "fastmlp_gemm": "numpy's BLAS (GEMM pointers)" if _backend.USE_BLAS else "np.matmul fallback",
        "fastmlp_threads": threads.get_num_threads(),
        "openmp": threads.openmp_enabled(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                               "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                               "OMP_WAIT_POLICY") if k in os.environ},
    }
    return info


def _peer_versions(names):
    versions = {}
    for name, module in (("torch", "torch"), ("sklearn", "sklearn")):
        if name in names:
            try:
                versions[name] = __import__(module).__version__
            except Exception as exc:  # noqa: BLE001 - any import failure means "unavailable"
                versions[name] = None
                versions[name + "_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return versions


class CpuShare:
    """CPU used by *other* processes while a block runs, as a share of all cores (Linux only).

    On a shared machine this says how much the figures can be trusted: a BLAS
    pool that waits for a descheduled thread slows by far more than its share.
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields[:3]) + sum(fields[5:8])   # user nice system, irq softirq steal
        t = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.monotonic()

    def others(self, cores):
        """Share of ``cores`` used by other processes since construction, or None."""
        end = self._sample()
        if self.start is None or end is None or not cores:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start))
        return max(0.0, (busy - own) / (wall * cores)) if wall > 0 else None


def wait_idle(threshold, max_wait, window=0.5):
    """Wait until other processes use less than ``threshold`` of the cores over ``window``
    seconds, for at most ``max_wait`` seconds; return the last share seen (None if unknown)."""
    deadline = time.monotonic() + max_wait
    while True:
        probe = CpuShare()
        time.sleep(window)
        share = probe.others(available_cores())
        if share is None or share < threshold or time.monotonic() >= deadline:
            return share


# ---------------------------------------------------------------- measurement

def _rotate(seq, k):
    k %= max(1, len(seq))
    return seq[k:] + seq[:k]


BUSY_LIMIT = 0.05   # with --wait-idle, a repeat during which others took more CPU is redone


def interleave(tasks, repeats, log, idle=None, retries=3):
    """Run every task once per repeat, in an order that rotates between repeats.

    ``tasks`` maps names to callables returning one measurement. Returns
    ``({name: [value per repeat]}, [others' CPU share per repeat], discarded)``.
    With ``idle`` (see --wait-idle) each repeat first waits for a quiet machine,
    and a repeat during which other processes took >= BUSY_LIMIT of the CPU is
    thrown away and redone (at most ``retries * repeats`` times per call).
    """
    runs, busy, discarded, r = {name: [] for name in tasks}, [], 0, 0
    while len(busy) < repeats:
        if idle:
            idle()
        probe = CpuShare()
        got = {name: tasks[name]() for name in _rotate(list(tasks), r)}
        r += 1
        share = probe.others(available_cores())
        if idle and share is not None and share >= BUSY_LIMIT and discarded < retries * repeats:
            discarded += 1
            log("x")
            continue
        for name, value in got.items():
            runs[name].append(value)
        busy.append(share)
        log(".")
    return runs, busy, discarded


def _alternation(step, mm, seconds):
    """time(step + product) / (time(step) + time(product)), each timed alone here."""
    t_step = 1 / timed(step, seconds)
    t_mm = 1 / timed(mm, seconds)
    t_pair = 1 / timed(lambda i: (step(i), mm(i)), seconds)
    return t_pair / (t_step + t_mm)


def bench_train(sizes, batch, dtype, names, seconds, repeats, alternate, log, idle=None):
    """One row of the training table (a dict, see ``run``)."""
    X, T = make_data(dtype)
    cpu = CpuShare()
    row = {"network": network_name(sizes), "sizes": sizes, "batch": batch, "dtype": dtype,
           "results": {}}
    steps = {}
    for name in names:
        try:
            steps[name] = STEP_MAKERS[name](sizes, batch, dtype, X, T)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
            row["results"][name] = {"unavailable": f"{type(exc).__name__}: {exc}"[:200]}
    limit_call, flops = gemm_work(sizes, batch, dtype)
    tasks = {"gemm_limit": lambda: batch * timed(limit_call, seconds)}
    for name, (step, per_call) in steps.items():
        tasks[name] = lambda step=step, per_call=per_call: batch * per_call * timed(step, seconds)
    if alternate and dtype == "float32":   # the user's product is float32: so are these rows
        mm = user_matmul()
        for name, (step, per_call) in steps.items():
            if per_call == 1:
                tasks["alternation:" + name] = lambda step=step: _alternation(step, mm, seconds)
    runs, busy, discarded = interleave(tasks, repeats, log, idle)
    limit = median(runs["gemm_limit"])
    row["gemm_limit"] = limit
    row["gemm_limit_runs"] = runs["gemm_limit"]
    row["gemm_gflops"] = limit / batch * flops / 1e9
    for name in steps:
        v = median(runs[name])
        res = {"samples_per_s": v, "of_limit": v / limit, "runs": runs[name],
               "steps_per_call": steps[name][1]}
        if "alternation:" + name in runs:
            res["alternation"] = median(runs["alternation:" + name])
            res["alternation_runs"] = runs["alternation:" + name]
        row["results"][name] = res
    fm = row["results"].get("fastmlp", {}).get("samples_per_s")
    if fm:
        row["fastmlp_speedup"] = {n: fm / r["samples_per_s"] for n, r in row["results"].items()
                                  if n != "fastmlp" and "samples_per_s" in r}
    row["other_processes_cpu_share"] = cpu.others(available_cores())
    row["other_processes_cpu_share_per_repeat"] = busy
    row["discarded_repeats"] = discarded
    return row


def _predictors(sizes, dtype, names):
    preds, missing = {}, {}
    if "fastmlp" in names:
        from .networks import MultiLayerNet
        net = MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], dtype=dtype, seed=0)
        preds["fastmlp"] = net.predict
    if "numpy" in names:
        from .reference import MultiLayerNet as RefNet
        preds["numpy"] = RefNet(sizes[0], sizes[1:-1], sizes[-1], dtype=dtype, seed=0).predict
    if "torch" in names:
        try:
            import torch
            model = _torch_model(sizes, dtype)
            model.eval()

            def torch_predict(x, model=model, torch=torch):
                with torch.no_grad():
                    return model(torch.from_numpy(x))
            preds["torch"] = torch_predict
        except Exception as exc:  # noqa: BLE001
            missing["torch"] = {"unavailable": f"{type(exc).__name__}: {exc}"[:200]}
    return preds, missing


def bench_predict(sizes, dtype, names, seconds, repeats, log, idle=None):
    X, _ = make_data(dtype)
    preds, missing = _predictors(sizes, dtype, names)
    rows = []
    for batch in PREDICT_BATCHES:
        cpu = CpuShare()
        row = {"network": network_name(sizes), "sizes": sizes, "batch": batch, "dtype": dtype,
               "results": dict(missing)}
        tasks = {}
        for name, f in preds.items():
            def task(f=f, b=batch):
                return b * timed(lambda i: f(X[_start(i, b):_start(i, b) + b]), seconds)
            tasks[name] = task
        runs, busy, discarded = interleave(tasks, repeats, log, idle)
        for name in preds:
            row["results"][name] = {"samples_per_s": median(runs[name]), "runs": runs[name]}
        fm = row["results"].get("fastmlp", {}).get("samples_per_s")
        if fm:
            row["fastmlp_speedup"] = {n: fm / r["samples_per_s"] for n, r in row["results"].items()
                                      if n != "fastmlp" and "samples_per_s" in r}
        row["other_processes_cpu_share"] = cpu.others(available_cores())
        row["other_processes_cpu_share_per_repeat"] = busy
        row["discarded_repeats"] = discarded
        rows.append(row)
    return rows


# ---------------------------------------------------------------- output

def _fmt_rate(v):
    return f"{v:,.0f}"


def format_table(header, rows, align=None):
    """Plain-text table: columns padded to their widest cell; numbers right-aligned."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    align = align or ["<"] + [">"] * (len(header) - 1)
    lines = ["  ".join(f"{str(h):{a}{w}}" for h, a, w in zip(header, align, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(f"{str(c):{a}{w}}" for c, a, w in zip(r, align, widths)).rstrip())
    return "\n".join(lines)


def _cell(res, share=True):
    if res is None:
        return "-"
    if "samples_per_s" not in res:
        return "n/a"
    text = _fmt_rate(res["samples_per_s"])
    if share and "of_limit" in res:
        text += f" ({100 * res['of_limit']:.0f}%)"
    return text


def train_table(rows, names):
    others = [n for n in names if n != "fastmlp"]
    header = (["network @batch", "dtype", "GEMM limit"] + [PEER_LABELS[n] for n in names]
              + ([f"fastmlp / {n}" for n in others] if "fastmlp" in names else []) + ["busy"])
    body = []
    for row in rows:
        cells = [f"{row['network']} @{row['batch']}", row["dtype"], _fmt_rate(row["gemm_limit"])]
        cells += [_cell(row["results"].get(n)) for n in names]
        if "fastmlp" in names:
            sp = row.get("fastmlp_speedup", {})
            cells += [f"{sp[n]:.2f}x" if n in sp else "-" for n in others]
        cells.append(_busy(row))
        body.append(cells)
    return format_table(header, body)


def _summary(row):
    """One line of progress: each peer's samples/s (share of the limit), others' CPU share."""
    parts = [f"{n} {_cell(r)}" for n, r in row["results"].items() if "samples_per_s" in r]
    return ", ".join(parts) + f", busy {_busy(row)}"


def _busy(row):
    """The most CPU other processes took during one of the row's kept repeats."""
    shares = [v for v in row.get("other_processes_cpu_share_per_repeat", []) if v is not None]
    return f"{100 * max(shares):.0f}%" if shares else "?"


def alternation_table(rows, names):
    header = ["network @batch", "dtype"] + [PEER_LABELS[n] for n in names]
    body = []
    for row in rows:
        if not any("alternation" in row["results"].get(n, {}) for n in names):
            continue
        body.append([f"{row['network']} @{row['batch']}", row["dtype"]]
                    + [f"{row['results'][n]['alternation']:.2f}"
                       if "alternation" in row["results"].get(n, {}) else "-" for n in names])
    return format_table(header, body) if body else ""


def predict_table(rows, names):
    names = [n for n in names if any(n in r["results"] for r in rows)]
    others = [n for n in names if n != "fastmlp"]
    header = (["network", "dtype", "batch"] + [PEER_LABELS[n] for n in names]
              + ([f"fastmlp / {n}" for n in others] if "fastmlp" in names else []) + ["busy"])
    body = []
    for row in rows:
        cells = [row["network"], row["dtype"], str(row["batch"])]
        cells += [_cell(row["results"].get(n), share=False) for n in names]
        if "fastmlp" in names:
            sp = row.get("fastmlp_speedup", {})
            cells += [f"{sp[n]:.2f}x" if n in sp else "-" for n in others]
        cells.append(_busy(row))
        body.append(cells)
    return format_table(header, body)


def header_text(info, settings):
    blas = info["blas"]
    lines = [
        f"fastmlp bench  {info['date']}",
        f"machine: {info['cpu']}, {info['cores']} cores available ({info['logical_cpus']} logical), "
        f"{info['platform']}",
        f"python {info['python']}, numpy {info['numpy']}, fastmlp {info['fastmlp']}"
        + "".join(f", {k} {v}" for k, v in info.get("peers", {}).items()
                  if not k.endswith("_error") and v),
        f"numpy's BLAS: {blas.get('internal_api')} {blas.get('version')}, "
        f"kernel {blas.get('architecture')}, {blas.get('threading_layer')}, "
        f"{blas.get('num_threads')} threads ({blas.get('filepath')})",
        f"fastmlp: GEMMs on {info['fastmlp_gemm']}, OpenMP {'on' if info['openmp'] else 'off'}, "
        f"{info['fastmlp_threads']} threads",
        f"timing: median of {settings['repeats']} runs of {settings['seconds']:g} s per cell, "
        f"peers interleaved; samples/s of one SGD step (lr {LR}); "
        f"(%) = share of the GEMM-bound limit",
    ]
    if info["env"]:
        lines.append("environment: " + ", ".join(f"{k}={v}" for k, v in info["env"].items()))
    if info.get("load_average"):
        lines.append("load average at start (1, 5, 15 min): "
                     + ", ".join(f"{v:.2f}" for v in info["load_average"]))
    return "\n".join(lines)


def plot(result, path):
    """Grouped bars (log scale): samples/s per network and dtype, fastmlp vs peers, limit marked."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise BenchError(f"--plot needs matplotlib, which is not installed: {PLOT_HINT}") from None
    rows = result["train"]
    names = [n for n in PEERS if any("samples_per_s" in r["results"].get(n, {}) for r in rows)]
    colors = {"fastmlp": "#d62728", "numpy": "#1f77b4", "torch": "#ff7f0e", "sklearn": "#2ca02c"}
    fig = Figure(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        xs = [i + (k - (len(names) - 1) / 2) * width for i, r in enumerate(rows)
              if "samples_per_s" in r["results"].get(name, {})]
        ys = [r["results"][name]["samples_per_s"] for r in rows
              if "samples_per_s" in r["results"].get(name, {})]
        ax.bar(xs, ys, width, label=PEER_LABELS[name], color=colors.get(name))
    for i, r in enumerate(rows):
        ax.hlines(r["gemm_limit"], i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                  label="GEMM-bound limit" if i == 0 else None)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['network']}\n@{r['batch']} {r['dtype']}" for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("training samples/s (one SGD step)")
    m = result["machine"]
    ax.set_title(f"fastmlp bench, {result['date'][:10]}: {m['cpu']}, {m['cores']} cores, "
                 f"{m['blas'].get('internal_api')} {m['blas'].get('version')}", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------- entry points

def _log(text):
    print(text, end="", file=sys.stderr, flush=True)


def run(args):
    """Run ``fastmlp bench`` with parsed ``args``; print the tables; return the exit status."""
    try:
        return _run(args)
    except BenchError as exc:
        print(f"fastmlp bench: error: {exc}", file=sys.stderr)
        return 1


def _run(args):
    names = _names(args.only, PEERS, PEER_ALIASES, "peer")
    configs = parse_configs(args.configs)
    dtypes = _names(args.dtypes, DTYPES, {"f32": "float32", "f64": "float64"}, "dtype")
    if args.repeats < 1:
        raise BenchError(f"--repeats must be >= 1, got {args.repeats}")
    seconds = args.seconds if args.seconds is not None else (0.1 if args.quick else 0.5)
    if not seconds > 0:
        raise BenchError(f"--seconds must be > 0, got {seconds}")
    if args.plot:
        _check_plot_path(args.plot)
    if args.json:
        parent = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(parent):
            raise BenchError(f"--json {args.json}: directory {parent} does not exist")
    if os.environ.get("OPENBLAS_CORETYPE"):
        print(f"fastmlp bench: warning: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is "
              "set: numpy's OpenBLAS runs that kernel instead of the best one for this CPU, so "
              "every figure (and the GEMM limit) is off. For a fair run: "
              "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastmlp bench", file=sys.stderr)

    info = machine_info()      # before torch/sklearn load their own pools
    load = (info.get("load_average") or [0])[0]
    if load > 0.5 * (info["cores"] or 1):
        print(f"fastmlp bench: warning: load average {load:.2f} on {info['cores']} cores: other "
              "processes compete for the CPU, and BLAS thread pools that wait for a descheduled "
              "thread make every figure noisy (compare ratios within this run only)",
              file=sys.stderr)
    info["peers"] = _peer_versions(names)
    blas_threads = info["blas"].get("num_threads")
    if "torch" in names and info["peers"].get("torch"):
        import torch
        if blas_threads:
            torch.set_num_threads(blas_threads)
        info["torch_threads"] = torch.get_num_threads()
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    info["date"] = date
    settings = {"seconds": seconds, "repeats": args.repeats, "peers": names, "dtypes": dtypes,
                "configs": [{"sizes": s, "batch": b} for s, b in configs], "lr": LR,
                "n_rows": N_ROWS, "sklearn_batches_per_call": SKLEARN_BATCHES,
                "alternate": bool(args.alternate), "predict": bool(args.predict),
                "wait_idle": args.wait_idle}
    print(header_text(info, settings), flush=True)

    idle = None
    if args.wait_idle:
        def idle():
            share = wait_idle(BUSY_LIMIT, args.wait_idle)
            if share is not None and share >= BUSY_LIMIT:
                _log("!")   # waited in vain: this repeat runs on a busy machine
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
            _log(f"{network_name(sizes)} @{batch} {dtype} ")
            row = bench_train(sizes, batch, dtype, names, seconds, args.repeats, args.alternate,
                              _log, idle)
            train_rows.append(row)
            _log(" " + _summary(row) + "\n")
            save_partial()
    if args.predict:
        for sizes, _ in configs:
            for dtype in dtypes:
                _log(f"predict {network_name(sizes)} {dtype} ")
                rows = bench_predict(sizes, dtype, names, seconds, args.repeats, _log, idle)
                predict_rows.extend(rows)
                _log(" " + "; ".join(f"@{r['batch']}: " + _summary(r) for r in rows) + "\n")
                save_partial()

    info["other_processes_cpu_share"] = cpu.others(info["cores"])
    result = collect()

    print()
    print("Training: samples/s of one SGD step (share of the GEMM-bound limit); "
          "busy: the most CPU other processes took during a repeat")
    print(train_table(train_rows, names))
    for n in names:
        reasons = {r["results"][n]["unavailable"] for r in train_rows
                   if "unavailable" in r["results"].get(n, {})}
        for reason in sorted(reasons):
            print(f"  {PEER_LABELS[n]} unavailable: {reason}")
    if "sklearn" in names:
        print(f"  (scikit-learn: partial_fit on {SKLEARN_BATCHES} batches per call, "
              f"counted as {SKLEARN_BATCHES} steps)")
    if args.alternate:
        table = alternation_table(train_rows, names)
        print()
        print("Alternation: one step + one user-side numpy (128,784)@(784,100) float32 product,")
        print("as a multiple of the two timed alone (1.0: the pools coexist; >> 1: they fight)")
        print(table or "  (no float32 rows)")
    if args.predict:
        print()
        print("Inference: samples/s of predict (fastmlp, numpy) / model(x) under no_grad (torch)")
        print(predict_table(predict_rows, names))

    share = info["other_processes_cpu_share"]
    if share is not None:
        print(f"\nother processes used {100 * share:.0f}% of the {info['cores']} cores during "
              "this run" + (" (a busy machine: figures are noisy)" if share > 0.1 else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(result, complete=True), f, indent=1)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def main(argv=None):
    """``python -m fastmlp.bench [options]``: the same as ``fastmlp bench``."""
    parser = argparse.ArgumentParser(prog="fastmlp bench", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
