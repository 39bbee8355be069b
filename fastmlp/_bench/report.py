"""What ``fastmlp bench`` prints and draws: the header, the three tables, the chart.

Plain-text tables padded to their widest cell, prose wrapped at WIDTH columns;
the bar chart itself is drawn by ``fastmlp._plot`` (the one plotting module,
shared with ``fastmlp train``).
"""
import textwrap

from .. import _plot
from .configs import LR, ONNX_THREADS, PEER_LABELS, PEERS, SKLEARN_BATCHES
from .options import BenchError

WIDTH = 100   # columns of the printed prose (a table of fastmlp and numpy fits too)
# column headers: the numpy peer is fastmlp.reference, as the header lines say
_COLUMNS = dict(PEER_LABELS, numpy="numpy")
_INSTALL = {"torch": "pip install torch", "sklearn": 'pip install "fastmlp[sklearn]"'}


def _wrap(text):
    """``text`` wrapped at WIDTH columns, continuation lines indented."""
    return "\n".join(textwrap.fill(line, WIDTH, subsequent_indent="    ", break_on_hyphens=False)
                     for line in text.splitlines())


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


def _busy(row):
    """The most CPU other processes took during one of the row's kept repeats."""
    shares = [v for v in row.get("other_processes_cpu_share_per_repeat", []) if v is not None]
    return f"{100 * max(shares):.0f}%" if shares else "?"


def summary(row):
    """One line of progress: each peer's samples/s (share of the limit), others' CPU share."""
    parts = [f"{n} {_cell(r)}" for n, r in row["results"].items() if "samples_per_s" in r]
    return ", ".join(parts) + f", busy {_busy(row)}"


def _several_activations(rows):
    return len({r.get("activation", "relu") for r in rows}) > 1


def train_table(rows, names):
    """The training table: GEMM limit, each peer (share of the limit), fastmlp's speedups;
    an activation column when the rows have several."""
    others = [n for n in names if n != "fastmlp"]
    acts = _several_activations(rows)
    header = (["network @batch", "dtype"] + (["activation"] if acts else []) + ["GEMM limit"]
              + [_COLUMNS[n] for n in names]
              + ([f"fastmlp / {n}" for n in others] if "fastmlp" in names else []) + ["busy"])
    body = []
    for row in rows:
        cells = ([f"{row['network']} @{row['batch']}", row["dtype"]]
                 + ([row.get("activation", "relu")] if acts else [])
                 + [_fmt_rate(row["gemm_limit"])])
        body.append(cells + _peer_cells(row, names, others, share=True))
    return format_table(header, body)


def activation_table(rows, names):
    """Each peer's samples/s at each activation as a multiple of the same network's at the
    first activation measured (timed interleaved in the same repeats); "" for one activation."""
    if not _several_activations(rows):
        return ""
    groups = {}
    for row in rows:
        groups.setdefault((row["network"], row["batch"], row["dtype"]), []).append(row)
    header = ["network @batch", "dtype", "activation"] + [_COLUMNS[n] for n in names]
    body = []
    for (network, batch, dtype), group in groups.items():
        base = group[0]
        for row in group[1:]:
            cells = []
            for n in names:
                a = row["results"].get(n, {}).get("samples_per_s")
                b = base["results"].get(n, {}).get("samples_per_s")
                cells.append(f"{a / b:.2f}" if a and b else "-")
            body.append([f"{network} @{batch}", dtype,
                         f"{row['activation']} / {base['activation']}"] + cells)
    return format_table(header, body)


def _peer_cells(row, names, others, share):
    """A row's cells after its labels: each peer's rate, fastmlp's speedups, the busy share."""
    cells = [_cell(row["results"].get(n), share=share) for n in names]
    if "fastmlp" in names:
        sp = row.get("fastmlp_speedup", {})
        cells += [f"{sp[n]:.2f}x" if n in sp else "-" for n in others]
    return cells + [_busy(row)]


def alternation_table(rows, names):
    """The alternation multiples of the float32 rows ("" when there are none)."""
    header = ["network @batch", "dtype"] + [_COLUMNS[n] for n in names]
    body = []
    for row in rows:
        if not any("alternation" in row["results"].get(n, {}) for n in names):
            continue
        body.append([f"{row['network']} @{row['batch']}", row["dtype"]]
                    + [f"{row['results'][n]['alternation']:.2f}"
                       if "alternation" in row["results"].get(n, {}) else "-" for n in names])
    return format_table(header, body) if body else ""


def predict_table(rows, names):
    """The inference table: samples/s per network, dtype and batch; fastmlp's speedups."""
    names = [n for n in names if any(n in r["results"] for r in rows)]
    others = [n for n in names if n != "fastmlp"]
    header = (["network", "dtype", "batch"] + [_COLUMNS[n] for n in names]
              + ([f"fastmlp / {n}" for n in others] if "fastmlp" in names else []) + ["busy"])
    body = []
    for row in rows:
        cells = [row["network"], row["dtype"], str(row["batch"])]
        body.append(cells + _peer_cells(row, names, others, share=False))
    return format_table(header, body)


def header_text(info, settings):
    """The lines printed before the measurements: date, machine, BLAS, fastmlp, timing."""
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
    if info.get("absent_peers"):
        lines.append("not installed, so left out: " + ", ".join(
            f"{PEER_LABELS[n]} ({_INSTALL.get(n, 'pip install ' + n)})"
            for n in info["absent_peers"]))
    if info["env"]:
        lines.append("environment: " + ", ".join(f"{k}={v}" for k, v in info["env"].items()))
    if info.get("load_average"):
        lines.append("load average at start (1, 5, 15 min): "
                     + ", ".join(f"{v:.2f}" for v in info["load_average"]))
    return _wrap("\n".join(lines))


def print_tables(info, names, train_rows, predict_rows, alternate, predict):
    """Print the tables after the run, then the CPU other processes took during it."""
    print()
    print(_wrap("Training: samples/s of one SGD step (share of the GEMM-bound limit); numpy: "
                "fastmlp.reference; busy: the most CPU other processes took during a repeat"))
    print(train_table(train_rows, names))
    for n in names:
        reasons = {r["results"][n]["unavailable"] for r in train_rows
                   if "unavailable" in r["results"].get(n, {})}
        for reason in sorted(reasons):
            print(_wrap(f"  {PEER_LABELS[n]} unavailable: {reason}"))
    if "sklearn" in names:
        print(f"  (scikit-learn: partial_fit on {SKLEARN_BATCHES} batches per call, "
              f"counted as {SKLEARN_BATCHES} steps)")
    table = activation_table(train_rows, names)
    if table:
        print()
        print(_wrap("Activations: samples/s as a multiple of the same network's at the first "
                    "activation (same repeats, interleaved)"))
        print(table)
    if alternate:
        table = alternation_table(train_rows, names)
        print()
        print("Alternation: one step + one user-side numpy (128,784)@(784,100) float32 product,")
        print("as a multiple of the two timed alone (1.0: the pools coexist; >> 1: they fight)")
        print(table or "  (no float32 rows)")
    if predict:
        print()
        print("Inference: samples/s of predict (fastmlp, numpy) / model(x) under no_grad (torch)"
              f" / session.run of the export_onnx graph (onnxruntime, {ONNX_THREADS} intra-op threads,"
              " sequential)")
        print(predict_table(predict_rows, names + ["onnxruntime"]))
        reasons = {r["results"]["onnxruntime"]["unavailable"] for r in predict_rows
                   if "unavailable" in r["results"].get("onnxruntime", {})}
        for reason in sorted(reasons):
            print(f"  {PEER_LABELS['onnxruntime']} unavailable: {reason}")

    share = info["other_processes_cpu_share"]
    if share is not None:
        print("\n" + _wrap(f"other processes used {100 * share:.0f}% of the {info['cores']} cores "
                          "during this run"
                          + (" (a busy machine: figures are noisy)" if share > 0.1 else "")))


def plot(result, path):
    """Grouped bars (log scale): samples/s per network and dtype, fastmlp vs peers, limit marked."""
    try:
        _plot.bench_bars(result, path, PEERS, PEER_LABELS)
    except _plot.MatplotlibMissing as exc:
        raise BenchError(str(exc)) from None
