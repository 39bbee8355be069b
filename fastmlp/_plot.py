"""Every figure fastmlp draws, and the one check that matplotlib is there.

Two front doors write images: ``fastmlp train --plot`` (loss and accuracy
curves of a Trainer) and ``fastmlp bench --plot`` (samples/s per network,
fastmlp vs its peers). Both come here, so there is one message for a missing
matplotlib and one way of drawing off-screen (the Agg canvas on a bare
``Figure``: no pyplot, no global state, no display needed).

matplotlib is optional (``pip install fastmlp[plot]``) and imported only
inside these functions. A missing matplotlib raises ``MatplotlibMissing``;
each front door reports it as its own one-line error.
"""
import importlib.util
import os

import numpy as np

PLOT_HINT = "pip install fastmlp[plot]  (or: pip install matplotlib)"
MISSING_MESSAGE = f"--plot needs matplotlib, which is not installed: {PLOT_HINT}"

# bar colours of the bench peers (matplotlib's first tab10 colours; fastmlp red)
PEER_COLORS = {"fastmlp": "#d62728", "numpy": "#1f77b4", "torch": "#ff7f0e", "sklearn": "#2ca02c"}


class MatplotlibMissing(Exception):
    """matplotlib is not installed (or cannot be imported); the message names the extra."""

    def __init__(self, message=MISSING_MESSAGE):
        super().__init__(message)


def require_matplotlib():
    """Raise ``MatplotlibMissing`` unless matplotlib can be found.

    Called before the work whose result is to be plotted, so that a missing
    matplotlib fails in a second rather than after a long run. It looks the
    package up without importing it (nothing is loaded before a benchmark's
    timed runs); the figure functions below raise the same error should the
    import itself fail later.
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise MatplotlibMissing()


def image_path(path):
    """The file ``path`` names as a figure: its format must be one matplotlib's canvas writes
    (ValueError listing them otherwise); with no extension, ``.png`` is appended, the file
    ``savefig`` would write. Returned unchanged when matplotlib is missing (the command
    reports that before any work, with ``require_matplotlib``)."""
    if importlib.util.find_spec("matplotlib") is None:
        return path
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    formats = sorted(FigureCanvasAgg.get_supported_filetypes())
    ext = os.path.splitext(path)[1]
    if not ext:
        return path + ".png"
    if ext[1:].lower() not in formats:
        raise ValueError(f"{path}: matplotlib cannot write {ext!r} files; give a file ending in "
                         + ", ".join("." + f for f in formats))
    return path


def _figure(figsize):
    """A bare matplotlib ``Figure`` on the Agg canvas (``layout="constrained"``)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MatplotlibMissing() from None
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def training_curves(trainer, path, title=""):
    """Write the loss per step and the accuracies per epoch of ``trainer`` to an image file.

    Left: every mini-batch loss (log scale) and its mean over one epoch's
    steps; right: train and test accuracy per epoch (``fastmlp train --plot``).
    """
    fig = _figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    steps = np.arange(1, len(trainer.train_loss_list) + 1)
    losses = np.asarray(trainer.train_loss_list)
    ax_loss.plot(steps, losses, lw=0.6, alpha=0.4, label="mini-batch")
    window = max(1, int(round(trainer.iter_per_epoch)))
    if losses.size >= window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax_loss.plot(steps[window - 1:], smooth, lw=1.5,
                     label=f"mean over {window} steps (1 epoch)")
    ax_loss.set(xlabel="step", ylabel="loss", title="training loss")
    ax_loss.set_yscale("log")
    ax_loss.legend()
    epochs = np.arange(1, len(trainer.test_acc_list) + 1)
    ax_acc.plot(epochs, trainer.train_acc_list, marker="o", ms=3, label="train")
    ax_acc.plot(epochs, trainer.test_acc_list, marker="s", ms=3, label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)


def bench_bars(result, path, peers, labels):
    """Grouped bars (log scale) of a ``fastmlp bench`` result: samples/s per network and dtype.

    ``result`` is the bench's JSON record (``train`` rows, ``machine``,
    ``date``); ``peers`` gives the order of the bars and ``labels`` their
    legend names. The GEMM-bound limit of each row is a dashed line.
    """
    rows = result["train"]
    names = [n for n in peers if any("samples_per_s" in r["results"].get(n, {}) for r in rows)]
    fig = _figure((max(6.0, 1.3 * len(rows) + 2), 4.8))
    ax = fig.subplots()
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        xs = [i + (k - (len(names) - 1) / 2) * width for i, r in enumerate(rows)
              if "samples_per_s" in r["results"].get(name, {})]
        ys = [r["results"][name]["samples_per_s"] for r in rows
              if "samples_per_s" in r["results"].get(name, {})]
        ax.bar(xs, ys, width, label=labels[name], color=PEER_COLORS.get(name))
    for i, r in enumerate(rows):
        ax.hlines(r["gemm_limit"], i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                  label="GEMM-bound limit" if i == 0 else None)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['network']}\n@{r['batch']} {r['dtype']}"
                        + (f" {r['activation']}" if r.get("activation", "relu") != "relu" else "")
                        for r in rows],
                       fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("training samples/s (one SGD step)")
    m = result["machine"]
    ax.set_title(f"fastmlp bench, {result['date'][:10]}: {m['cpu']}, {m['cores']} cores, "
                 f"{m['blas'].get('internal_api')} {m['blas'].get('version')}", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.savefig(path, dpi=110)


def scaling_efficiency(predictions, machines, path):
    """Predicted weak-scaling efficiency of data-parallel training against the number of
    machines, one line per network and link (``bench/cost_model.py``'s model)."""
    fig = _figure((7.5, 4.5))
    ax = fig.subplots()
    styles = {"10 Gbit/s": "solid", "100 Gbit/s": "dashed"}
    for i, p in enumerate(predictions):
        color = f"C{i}"
        for link, points in p["links"].items():
            eff = [p["compute_s"] / (p["compute_s"] + t) for _, t in points]
            ax.plot(machines, eff, marker="o", ms=3, color=color, linestyle=styles.get(link),
                    label=f"{p['net']}, {link}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(machines)
    ax.set_xticklabels([str(k) for k in machines])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("machines K (each with this machine's cores and batch)")
    ax.set_ylabel("efficiency  T_compute / (T_compute + T_allreduce)")
    ax.set_title("predicted weak scaling, ring all-reduce, no overlap", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.savefig(path, dpi=110)
