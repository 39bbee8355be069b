"""The options of ``fastmlp bench``: the argparse definitions and their checks.

Everything a user can get wrong on the command line is found here, before any
measurement starts, and reported as a ``BenchError`` (one line, exit status 1).
"""
import os

from .. import _plot
from .configs import (
    ACTIVATION_ALIASES,
    ACTIVATIONS,
    CONFIGS,
    DTYPE_ALIASES,
    DTYPES,
    LAYER_EXTRA_ALIASES,
    LAYER_EXTRAS,
    N_ROWS,
    PEER_ALIASES,
    PEERS,
    PREDICT_BATCHES,
    SKLEARN_BATCHES,
    network_name,
)


class BenchError(Exception):
    """A problem with the arguments, reported in one line (exit status 1)."""


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
    parser.add_argument("--activations", default="relu", metavar="LIST",
                        help="comma-separated hidden activations among " + ", ".join(ACTIVATIONS)
                        + ", each optionally followed by the book's chapter-6 layers "
                        "(relu+bn+dropout: MultiLayerNetExtend; PyTorch BatchNorm1d, "
                        "Dropout(0.5)) (default: relu); with several, each network and dtype "
                        "times them all interleaved in one loop and a table gives each one's "
                        "samples/s as a share of the first's")
    parser.add_argument("--alternate", action="store_true",
                        help="also time each float32 step alternated with a user-side numpy "
                             "(128, 784) @ (784, 100) float32 product, as a multiple of the "
                             "two timed alone (1.0: they coexist; >> 1: thread pools fight)")
    parser.add_argument("--predict", action="store_true",
                        help="also time inference at batch 1, 100 and 10000: fastmlp predict "
                             "vs torch model(x) under no_grad and onnxruntime on the graph "
                             "fastmlp.export_onnx writes")
    parser.add_argument("--wait-idle", type=float, default=0, metavar="S",
                        help="on a shared machine: before each repeat wait (at most S seconds) "
                             "until other processes use < 5%% of the CPU, and redo a repeat "
                             "during which they took more (at most 3 times as many as --repeats)")
    parser.add_argument("--json", metavar="FILE", default=None,
                        help="write every measurement, the machine and the settings as JSON")
    parser.add_argument("--plot", metavar="FILE.png", default=None,
                        help="bar chart of samples/s per network and dtype (needs matplotlib)")
    return parser


def parse_names(text, known, aliases, what):
    """The names of the comma-separated ``text`` (aliases resolved), in the order of ``known``."""
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
    try:
        _plot.require_matplotlib()
    except _plot.MatplotlibMissing as exc:
        raise BenchError(str(exc)) from None
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise BenchError(f"--plot {path}: directory {parent} does not exist")


def _variant(raw):
    """A hidden-layer variant of --activations in canonical form: an activation, then the
    chapter-6 layers after it (``relu+bn+dropout``)."""
    act, *extras = [part.strip().lower() for part in raw.split("+")]
    act = ACTIVATION_ALIASES.get(act, act)
    if act not in ACTIVATIONS:
        raise BenchError(f"unknown activation {raw.strip()!r}; choose among "
                         f"{', '.join(ACTIVATIONS)}, each optionally followed by "
                         f"+{' +'.join(LAYER_EXTRAS)}")
    extras = [LAYER_EXTRA_ALIASES.get(e, e) for e in extras]
    for extra in extras:
        if extra not in LAYER_EXTRAS:
            raise BenchError(f"unknown layer {extra!r} in {raw.strip()!r}; after the "
                             f"activation choose among {', '.join(LAYER_EXTRAS)}")
    return "+".join([act] + [e for e in LAYER_EXTRAS if e in extras])


def resolve(args):
    """Check parsed ``args``; return ``(peer names, [(sizes, batch)], dtypes, seconds,
    activations)`` (the activations in the order given: the first is the baseline)."""
    names = parse_names(args.only, PEERS, PEER_ALIASES, "peer")
    activations = []
    for raw in args.activations.split(","):
        act = _variant(raw)
        if act not in activations:
            activations.append(act)
    configs = parse_configs(args.configs)
    dtypes = parse_names(args.dtypes, DTYPES, DTYPE_ALIASES, "dtype")
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
    return names, configs, dtypes, seconds, activations
