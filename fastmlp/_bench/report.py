"""What ``fastmlp bench`` prints and draws: the header, the tables, the chart.

Everything printed fits WIDTH columns: prose is wrapped, tables use short peer
names (a legend line under each says what they stand for), have no column for a
peer without a figure, and a table too wide is split between column groups,
repeating the row labels. The bar chart itself is drawn by ``fastmlp._plot``
(the one plotting module, shared with ``fastmlp train``).
"""
import sys
import textwrap

from .. import _plot
from .configs import LR, ONNX_THREADS, PEER_LABELS, PEERS, SKLEARN_BATCHES
from .options import BenchError

WIDTH = 100   # columns of everything printed: prose, tables, progress lines
# short column names, explained in a legend line under each table
SHORT = {"fastmlp": "fastmlp", "numpy": "numpy", "torch": "torch", "sklearn": "sklearn",
         "onnxruntime": "ort"}
_TRAIN_LEGEND = {"numpy": "fastmlp.reference", "torch": "PyTorch",
                 "sklearn": f"scikit-learn, partial_fit on {SKLEARN_BATCHES} batches per call, "
                            f"counted as {SKLEARN_BATCHES} steps"}
_PREDICT_LEGEND = {"numpy": "fastmlp.reference", "torch": "PyTorch, model(x) under no_grad",
                   "onnxruntime": f"onnxruntime, session.run of the export_onnx graph "
                                  f"({ONNX_THREADS} intra-op threads, sequential)"}
_INSTALL = {"torch": "pip install torch", "sklearn": 'pip install "fastmlp[sklearn]"'}
_BUSY = "busy: the most CPU other processes took during a repeat"


def _wrap(text):
    """``text`` wrapped at WIDTH columns, continuation lines indented."""
    return "\n".join(textwrap.fill(line, WIDTH, subsequent_indent="    ", break_on_hyphens=False)
                     for line in text.splitlines())


def _divide():
    """The sign of fastmlp's speedup columns: ÷ (÷torch: fastmlp's samples/s over torch's),
    or / where stdout cannot encode it."""
    encoding = getattr(sys.stdout, "encoding", None)   # None: a text buffer, takes any text
    try:
        "÷".encode(encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return "/"
    return "÷"


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


class Columns:
    """A group of columns that stays together: its headers, its cells (one list per row)
    and what they mean (a phrase of the table's caption, "" for none)."""

    def __init__(self, header, cells, caption=""):
        self.header, self.cells, self.caption = header, cells, caption


def _joined(labels, groups):
    """The label columns and ``groups`` side by side: (header, rows)."""
    header = labels.header + [h for g in groups for h in g.header]
    rows = [lab + [c for g in groups for c in g.cells[i]] for i, lab in enumerate(labels.cells)]
    return header, rows


def fit_tables(title, labels, tables):
    """``tables`` (lists of Columns, each printed after the ``labels`` columns) as text, each
    under a caption ``title`` + its groups' phrases. A table wider than WIDTH is split
    between groups: its last group moves to the front of the next table (a new one if
    need be), so every table repeats the row labels. A lone group still too wide (long row
    labels) gives up its last columns the same way, under its caption marked "continued"."""
    tables = [list(t) for t in tables]
    i = 0
    while i < len(tables):
        while _width(labels, tables[i]) > WIDTH and (
                len(tables[i]) > 1 or len(tables[i][0].header) > 1):
            if i + 1 == len(tables):
                tables.append([])
            if len(tables[i]) > 1:
                tables[i + 1].insert(0, tables[i].pop())
                continue
            group = tables[i][0]
            tables[i][0] = Columns(group.header[:-1], [c[:-1] for c in group.cells], group.caption)
            moved = ([group.header[-1]], [c[-1:] for c in group.cells])
            following = tables[i + 1][0] if tables[i + 1] else None
            if following is not None and following.caption == group.caption + " (continued)":
                following.header[:0] = moved[0]
                for cells, cell in zip(following.cells, moved[1]):
                    cells[:0] = cell
            else:
                tables[i + 1].insert(0, Columns(*moved, group.caption + " (continued)"))
        i += 1
    out = []
    for groups in tables:
        caption = "; ".join(g.caption for g in groups if g.caption)
        out.append(_wrap(f"{title}: {caption}") + "\n" + format_table(*_joined(labels, groups)))
    return "\n\n".join(out)


def _width(labels, groups):
    return max(map(len, format_table(*_joined(labels, groups)).splitlines()))


def measured(rows, names):
    """The peers of ``names`` with a figure in at least one of ``rows``: the others get no
    column (a peer that is not installed or failed everywhere)."""
    return [n for n in names if any("samples_per_s" in r["results"].get(n, {}) for r in rows)]


def _rate(res):
    if res is None:
        return "-"
    return _fmt_rate(res["samples_per_s"]) if "samples_per_s" in res else "n/a"


def _busy(row):
    """The most CPU other processes took during one of the row's kept repeats."""
    shares = [v for v in row.get("other_processes_cpu_share_per_repeat", []) if v is not None]
    return f"{100 * max(shares):.0f}%" if shares else "?"


def summary(row):
    """One row's figures for the progress lines: each peer's samples/s, others' CPU share."""
    parts = [f"{SHORT.get(n, n)} {_rate(r)}" for n, r in row["results"].items()
             if "samples_per_s" in r]
    return ", ".join(parts) + f", busy {_busy(row)}"


def _several_activations(rows):
    return len({r.get("activation", "relu") for r in rows}) > 1


def _rates(rows, names, caption, limit=False):
    """Each peer's samples/s, after the GEMM-bound limit's with ``limit``."""
    header = [SHORT[n] for n in names]
    cells = [[_rate(r["results"].get(n)) for n in names] for r in rows]
    if limit:
        header = ["GEMM limit"] + header
        cells = [[_fmt_rate(r["gemm_limit"])] + c for c, r in zip(cells, rows)]
    return Columns(header, cells, caption)


def _speedup_columns(rows, names):
    """fastmlp's samples/s over each other peer's ("" columns when fastmlp is not measured)."""
    others = [n for n in names if n != "fastmlp"] if "fastmlp" in names else []
    div = _divide()
    speedups = [r.get("fastmlp_speedup", {}) for r in rows]
    cells = [[f"{sp[n]:.2f}x" if n in sp else "-" for n in others] for sp in speedups]
    caption = (f"{div}{SHORT[others[0]]}: fastmlp's samples/s over {SHORT[others[0]]}'s"
               if others else "")
    return Columns([div + SHORT[n] for n in others], cells, caption)


def _busy_column(rows):
    return Columns(["busy"], [[_busy(r)] for r in rows], _BUSY)


def _legend(names, meanings):
    """One line naming what each short column name stands for ("" when none needs it)."""
    parts = [f"{SHORT[n]}: {meanings[n]}" for n in names if n in meanings]
    return _wrap("; ".join(parts)) if parts else ""


def _train_labels(rows, several):
    return Columns(["network @batch", "dtype"] + (["activation"] if several else []),
                   [[f"{r['network']} @{r['batch']}", r["dtype"]]
                    + ([r.get("activation", "relu")] if several else []) for r in rows])


def train_table(rows, names):
    """The training tables: samples/s of each peer beside the GEMM-bound limit, then each
    peer's share of that limit and fastmlp's speedups (split further where too wide), then
    the legend; an activation column when the rows have several."""
    names = measured(rows, names)
    rates = _rates(rows, names, "samples/s of one SGD step, beside the GEMM-bound limit "
                                "(the step's matrix products alone at numpy's BLAS rate)",
                   limit=True)
    shares = Columns([SHORT[n] for n in names],
                     [[f"{100 * r['results'][n]['of_limit']:.0f}%"
                       if "of_limit" in r["results"].get(n, {}) else "-" for n in names]
                      for r in rows], "each peer's share of the GEMM-bound limit")
    text = fit_tables("Training", _train_labels(rows, _several_activations(rows)),
                      [[rates, _busy_column(rows)], [shares, _speedup_columns(rows, names)]])
    legend = _legend(names, _TRAIN_LEGEND)
    return text + ("\n" + legend if legend else "")


def activation_table(rows, names):
    """Each peer's samples/s at each activation as a multiple of the same network's at the
    first activation measured (timed interleaved in the same repeats); "" for one activation."""
    if not _several_activations(rows):
        return ""
    names = measured(rows, names)
    groups = {}
    for row in rows:
        groups.setdefault((row["network"], row["batch"], row["dtype"]), []).append(row)
    header = ["network @batch", "dtype", "activation"] + [SHORT[n] for n in names]
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


def alternation_table(rows, names):
    """The alternation multiples of the float32 rows ("" when there are none)."""
    names = [n for n in names if any("alternation" in r["results"].get(n, {}) for r in rows)]
    body = []
    for row in rows:
        if not any("alternation" in row["results"].get(n, {}) for n in names):
            continue
        body.append([f"{row['network']} @{row['batch']}", row["dtype"]]
                    + [f"{row['results'][n]['alternation']:.2f}"
                       if "alternation" in row["results"].get(n, {}) else "-" for n in names])
    header = ["network @batch", "dtype"] + [SHORT[n] for n in names]
    return format_table(header, body) if body else ""


def predict_table(rows, names):
    """The inference table: samples/s per network, dtype and batch, fastmlp's speedups and
    the busy share (in a second table when too wide), then the legend."""
    names = measured(rows, names)
    labels = Columns(["network", "dtype", "batch"],
                     [[r["network"], r["dtype"], str(r["batch"])] for r in rows])
    rates = _rates(rows, names, "samples/s of predict")
    text = fit_tables("Inference", labels,
                      [[rates, _speedup_columns(rows, names), _busy_column(rows)]])
    legend = _legend(names, _PREDICT_LEGEND)
    return text + ("\n" + legend if legend else "")


def _unavailable(rows, names):
    """A line per peer and reason it could not run in some of ``rows``."""
    lines = []
    for n in names:
        reasons = {r["results"][n]["unavailable"] for r in rows
                   if "unavailable" in r["results"].get(n, {})}
        lines += [_wrap(f"  {PEER_LABELS[n]} unavailable: {why}") for why in sorted(reasons)]
    return lines


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
        f"peers interleaved, {settings['settle_seconds']:g} s idle before each (a peer's "
        f"activations in slices of {settings['slice_seconds']:g} s); training: samples/s of one "
        f"SGD step (lr {LR})",
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
    print(train_table(train_rows, names))
    for line in _unavailable(train_rows, names):
        print(line)
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
        print(predict_table(predict_rows, names + ["onnxruntime"]))
        for line in _unavailable(predict_rows, names + ["onnxruntime"]):
            print(line)

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
