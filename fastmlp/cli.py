"""The ``fastmlp`` command: ``fastmlp train``, ``fastmlp gradcheck`` and ``fastmlp bench``.

``fastmlp train`` trains a MultiLayerNet on the digits shipped with fastmlp
(or on MNIST-format files with ``--mnist DIR``) and prints per-epoch
accuracies and a summary (``--plot``: curves drawn by ``fastmlp._plot``);
``fastmlp gradcheck`` runs the book's gradient check; ``fastmlp bench`` is
the harness in ``fastmlp._bench``. Also available as ``python -m fastmlp``.
"""
import argparse
import os
import sys
import time

import numpy as np

from . import _plot
from ._version import __version__
from .optimizers import OPTIMIZERS

__all__ = ["main"]

OPTIMIZER_NAMES = list(OPTIMIZERS)   # the names fastmlp.optimizers.get_optimizer takes
# Learning rates that train the default network on digits to >= 0.97 (measured).
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.05,
              "rmsprop": 0.002, "adam": 0.002}


class CommandError(Exception):
    """A problem to report in one line, without a traceback (exit status 1)."""


# ---------------------------------------------------------------- argument types

def _int_at_least(minimum, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {value}")
        return value
    return parse


_positive_int = _int_at_least(1, "positive")
_seed = _int_at_least(0, "non-negative")


def _decay_factor(text):
    value = _float_at_least(0, strict=True)(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a factor in (0, 1], got {text}")
    return value


def _ratio(text):
    value = _float_at_least(0, strict=False)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a ratio in [0, 1), got {text}")
    return value


def _plot_file(text):
    """``--plot``: a file name whose format matplotlib writes (checked before training)."""
    try:
        return _plot.image_path(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _plural(count, noun):
    """``"1 epoch"``, ``"2 epochs"``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _float_at_least(minimum, strict):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not np.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"expected a finite number {bound} {minimum}, got {text}")
        return value
    return parse


def build_parser():
    """The argument parser of the ``fastmlp`` command."""
    parser = argparse.ArgumentParser(
        prog="fastmlp",
        description="Textbook multi-layer perceptrons on compiled CPU kernels.")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    train = sub.add_parser(
        "train", help="train a network and report its test accuracy",
        description="Train a MultiLayerNet (default: the digits shipped with fastmlp, one hidden "
                    "layer of 100 ReLU units, Adam) and print per-epoch accuracy and a summary.")
    train.add_argument("--hidden", type=_positive_int, nargs="+", default=[100], metavar="N",
                       help="units per hidden layer, e.g. --hidden 100 100 (default: 100)")
    train.add_argument("--activation", choices=["relu", "sigmoid", "tanh", "identity"],
                       default="relu", help="hidden-layer activation (default: relu); the "
                       "weights start He-scaled for relu, Xavier-scaled for the others")
    train.add_argument("--dropout", type=_ratio, default=0.0, metavar="R",
                       help="a Dropout of ratio R after every hidden activation "
                            "(MultiLayerNetExtend; default: none)")
    train.add_argument("--batchnorm", action="store_true",
                       help="a BatchNormalization before every hidden activation "
                            "(MultiLayerNetExtend)")
    train.add_argument("--optimizer", type=str.lower, choices=OPTIMIZER_NAMES, default="adam",
                       help="update rule (default: adam)")
    train.add_argument("--lr", type=_float_at_least(0, strict=True), default=None,
                       help="learning rate (default: " + ", ".join(
                           f"{k} {v:g}" for k, v in DEFAULT_LR.items()) + ")")
    train.add_argument("--lr-decay", type=_decay_factor, default=None,
                       metavar="FACTOR", help="multiply the learning rate by this after each epoch (default: no decay)")
    train.add_argument("--epochs", type=_positive_int, default=30, help="(default: 30)")
    train.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                       help="mini-batch size (default: 32)")
    train.add_argument("--weight-decay", type=_float_at_least(0, strict=False), default=0.0,
                       metavar="LAMBDA",
                       help="L2 strength: the loss adds 0.5*LAMBDA*sum(W**2) (default: 0)")
    train.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                       help="dtype of the parameters and the computation (default: float64)")
    train.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="threads for fastmlp and numpy's BLAS (default: all cores)")
    train.add_argument("--seed", type=_seed, default=0,
                       help="seeds the weight initialisation and the shuffling (default: 0)")
    train.add_argument("--mnist", metavar="DIR", default=None,
                       help="train on the four MNIST-format IDX files in DIR (MNIST, Fashion-MNIST)")
    train.add_argument("--reference", action="store_true",
                       help="use the pure-numpy reference network (slow; for comparison)")
    train.add_argument("--save", metavar="FILE", default=None,
                       help="save the trained network with fastmlp.save (on Ctrl-C: the "
                            "network after the last completed epoch)")
    train.add_argument("--plot", metavar="FILE.png", type=_plot_file, default=None,
                       help="write loss and accuracy curves (needs matplotlib; any format it "
                            "writes, by the extension; none: .png)")
    train.add_argument("--quiet", action="store_true",
                       help="print only the summary line: no per-epoch lines, no progress bar")
    train.add_argument("--checkpoint", metavar="FILE", default=None,
                       help="at every epoch's end write the network, optimizer and trainer "
                            "position to FILE and FILE.state.json (rank 0 only)")
    train.add_argument("--resume", metavar="FILE", default=None,
                       help="continue the run a --checkpoint FILE saved (same settings; "
                            "--epochs may grow)")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over the MPI job's ranks (fastmlp.distributed); run "
                            "as: mpiexec -n K python -m mpi4py -m fastmlp train --distributed "
                            "... (needs pip install \"fastmlp[mpi]\")")
    train.set_defaults(func=cmd_train)

    check = sub.add_parser(
        "gradcheck", help="compare backprop with numerical gradients (the book's check)",
        description="The book's gradient check: a small TwoLayerNet on a few digits; prints, per "
                    "parameter, the mean absolute difference between the backprop and the "
                    "numerical gradient and the largest error as a share of the per-element "
                    "bound of the dtype (shared/TESTING.md), then PASS, or FAIL with exit "
                    "status 1.")
    check.add_argument("--hidden", type=_positive_int, default=50, metavar="N",
                       help="hidden units of the TwoLayerNet (default: 50)")
    check.add_argument("--batch", type=_positive_int, default=3, metavar="N",
                       help="number of digit samples (default: 3)")
    check.add_argument("--dtype", choices=["float32", "float64"], default="float64",
                       help="(default: float64; float32 backprop is checked against float64 "
                            "central differences at the same weights)")
    check.add_argument("--seed", type=_seed, default=0, help="weight initialisation (default: 0)")
    check.add_argument("--reference", action="store_true",
                       help="check the pure-numpy reference network instead")
    check.set_defaults(func=cmd_gradcheck)

    bench = sub.add_parser(
        "bench", help="training-step and inference speed: fastmlp vs numpy, PyTorch, scikit-learn",
        description="Samples/s of one SGD training step per network and dtype, fastmlp side by "
                    "side with the numpy reference and (where installed) PyTorch and "
                    "scikit-learn, with each one's share of the GEMM-bound limit. For a fair "
                    "BLAS, run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.")
    from . import _bench  # the harness; it imports the peers lazily
    _bench.add_arguments(bench)
    bench.set_defaults(func=_bench.run)
    return parser


# ---------------------------------------------------------------- helpers

def _network_classes(reference):
    """(TwoLayerNet, MultiLayerNet): compiled, or the numpy reference."""
    if reference:
        from . import reference as module
        return module.TwoLayerNet, module.MultiLayerNet
    from .networks import MultiLayerNet, TwoLayerNet
    return TwoLayerNet, MultiLayerNet


def _mpi_world():
    """mpi4py's COMM_WORLD (initialises MPI), or a CommandError naming the extra."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise CommandError('--distributed needs mpi4py and an MPI library: pip install '
                           '"fastmlp[mpi]" (or mpi4py built against your system MPI; see '
                           'README, Distributed training)') from None
    return MPI.COMM_WORLD


def _abort_job(args, status):
    """In a data-parallel job of several ranks, end every rank (MPI_Abort): a rank that
    stops alone would leave the others waiting in a collective."""
    if not getattr(args, "distributed", False) or "mpi4py.MPI" not in sys.modules:
        return
    comm = sys.modules["mpi4py.MPI"].COMM_WORLD
    if comm.Get_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        comm.Abort(status)


def _run_settings(args, lr, n_train):
    """What a resumed run must share with the run it continues (--epochs may differ)."""
    return {"hidden": list(args.hidden), "activation": args.activation,
            "optimizer": args.optimizer, "lr": lr, "lr_decay": args.lr_decay,
            "batch_size": args.batch_size, "weight_decay": args.weight_decay,
            "dtype": args.dtype, "seed": args.seed, "reference": args.reference,
            "train_samples": n_train}


def _load_data(mnist_dir, shard=None):
    """(name, data); with ``shard=(rank, size)`` only that rank's rows of the training set."""
    from .datasets import load_digits, load_mnist
    if mnist_dir is None:
        return "digits", load_digits(shard=shard)
    try:
        return f"MNIST files in {mnist_dir}", load_mnist(mnist_dir, shard=shard)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def _saver():
    import fastmlp
    save = getattr(fastmlp, "save", None)
    if save is None:
        try:
            from .io import save
        except ImportError:
            raise CommandError("--save needs fastmlp.save (the fastmlp.io module), which this "
                               "installation of fastmlp does not have") from None
    return save


def _check_output_path(path, option):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise CommandError(f"{option} {path}: directory {parent} does not exist")
    if os.path.isdir(path):
        raise CommandError(f"{option} {path}: is a directory")


# ---------------------------------------------------------------- commands

def cmd_train(args):
    import fastmlp

    from . import _checkpoint
    from .trainer import Trainer

    comm = _mpi_world() if args.distributed else None
    root = comm is None or comm.Get_rank() == 0   # only rank 0 prints, plots and saves

    # everything that can fail cheaply fails before training starts
    if args.plot is not None:
        _plot.require_matplotlib()
        _check_output_path(args.plot, "--plot")
    save = None
    if args.save is not None:
        save = _saver()
        _check_output_path(args.save, "--save")
    if args.checkpoint is not None:
        _check_output_path(args.checkpoint, "--checkpoint")
    extend = args.dropout > 0 or args.batchnorm
    if extend:
        for option, given in (("--distributed", comm is not None), ("--save", args.save),
                              ("--checkpoint", args.checkpoint), ("--resume", args.resume)):
            if given:
                raise CommandError(f"--dropout/--batchnorm do not combine with {option} yet")
    resumed = None
    if args.resume is not None:
        try:
            resumed = _checkpoint.load_checkpoint(args.resume)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(f"--resume: {exc}") from None
    if args.threads is not None:
        fastmlp.set_num_threads(args.threads)

    shard = None if comm is None else (comm.Get_rank(), comm.Get_size())
    data_name, ((x_train, t_train), (x_test, t_test)) = _load_data(args.mnist, shard)
    n_train = x_train.shape[0] if comm is None else comm.allreduce(x_train.shape[0])
    if args.batch_size > n_train:
        raise CommandError(f"--batch-size {args.batch_size} exceeds the {n_train} "
                           f"training samples")
    _, MultiLayerNet = _network_classes(args.reference)
    dtype = np.dtype(args.dtype).type
    init = "he" if args.activation == "relu" else "xavier"
    if extend:
        from . import reference
        from .networks_extend import MultiLayerNetExtend
        cls = reference.MultiLayerNetExtend if args.reference else MultiLayerNetExtend
        network = cls(x_train.shape[1], args.hidden, 10, activation=args.activation,
                      weight_init_std=init, weight_decay_lambda=args.weight_decay,
                      use_dropout=args.dropout > 0, dropout_ration=args.dropout,
                      use_batchnorm=args.batchnorm, dtype=dtype, seed=args.seed)
    else:
        network = MultiLayerNet(x_train.shape[1], args.hidden, 10, activation=args.activation,
                                weight_init_std=init, weight_decay_lambda=args.weight_decay,
                                dtype=dtype, seed=args.seed)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]
    settings = _run_settings(args, lr, n_train)
    if resumed is not None:
        saved = resumed[2]["settings"]
        differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
        if differ:
            raise CommandError(f"--resume {args.resume}: the run used " + ", ".join(
                f"{k}={saved.get(k)!r}" for k in differ) + "; this one " + ", ".join(
                f"{k}={settings.get(k)!r}" for k in differ))
    verbose = not args.quiet and root
    sizes = "-".join(str(n) for n in [x_train.shape[1], *args.hidden, 10])
    kind = "reference (numpy)" if args.reference else "compiled"
    description = (f"{sizes} {args.activation} {args.dtype}, {args.optimizer} lr={lr:g}, "
                   f"batch {args.batch_size}, {_plural(args.epochs, 'epoch')}")
    if verbose:
        print(f"data: {data_name}, {n_train} train / {x_test.shape[0]} test samples"
              + ("" if comm is None else " (each rank reads its shard of the training set)"))
        print(f"network: {kind} {type(network).__name__} {description}"
              + (f", weight decay {args.weight_decay:g}" if args.weight_decay else "")
              + (f", dropout {args.dropout:g}" if args.dropout else "")
              + (", batch norm" if args.batchnorm else ""))

    trainer_class, extra = Trainer, {"sampling": "epoch"}   # each sample once per epoch
    if comm is not None:
        from .distributed import DataParallelTrainer
        trainer_class, extra = DataParallelTrainer, {"comm": comm, "sharded": True}
        if verbose:
            print(f"distributed: {comm.Get_size()} ranks, global batch {args.batch_size}")
    if args.checkpoint is not None:
        trainer_class = _checkpoint.checkpointing(trainer_class, args.checkpoint, settings,
                                                  write=root)
    if save is not None:   # on Ctrl-C, the last completed epoch is saved
        trainer_class = _checkpoint.snapshotting(trainer_class)
    trainer = trainer_class(network, x_train, t_train, x_test, t_test, epochs=args.epochs,
                            mini_batch_size=args.batch_size, optimizer=args.optimizer,
                            optimizer_param={"lr": lr}, verbose=verbose, lr_decay=args.lr_decay,
                            seed=args.seed, **extra)
    trainer.print_final_accuracy = False   # the summary line below says it once
    if resumed is not None:
        _checkpoint.restore(trainer, *resumed)
        if save is not None:
            trainer.take_snapshot()   # a checkpoint is an epoch's end
        if verbose:
            print(f"resumed from {args.resume}: epoch {trainer.current_epoch}, "
                  f"step {trainer.current_iter}")
    first_iter = trainer.current_iter
    start = time.perf_counter()
    try:
        test_acc = trainer.train()
    except FloatingPointError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        if save is not None and root:
            _save_last_epoch(trainer, save, args.save)
        raise
    wall = time.perf_counter() - start
    if not root:
        return 0
    steps = trainer.current_iter - first_iter
    # samples/s of this run's steps (fewer than current_iter after --resume)
    print(f"test acc {test_acc:.4f} | {_plural(trainer.current_epoch, 'epoch')}, "
          f"{_plural(trainer.current_iter, 'step')} "
          f"in {wall:.2f} s | {steps * trainer.batch_size / wall:,.0f} samples/s | "
          f"{kind} {sizes} {args.dtype}")

    if save is not None:
        save(network, args.save)
        print(f"saved the network to {args.save}")
    if args.plot is not None:
        _plot.training_curves(trainer, args.plot, title=f"{data_name}: {description}")
        print(f"wrote {args.plot}")
    return 0


def _save_last_epoch(trainer, save, path):
    """On Ctrl-C: save the network as it was at the last completed epoch's end (stderr says
    which epoch, or that none completed and nothing was saved)."""
    if trainer.epoch_snapshot is None:
        print(f"fastmlp train: interrupted before the first epoch ended: nothing saved to {path}",
              file=sys.stderr)
        return
    epoch, params = trainer.epoch_snapshot
    for name, value in params.items():
        np.copyto(trainer.network.params[name], value)
    save(trainer.network, path)
    print(f"fastmlp train: interrupted: saved the network as it was after epoch {epoch} (the "
          f"last completed) to {path}", file=sys.stderr)


def cmd_gradcheck(args):
    from . import _gradcheck
    from .datasets import load_digits

    TwoLayerNet, _ = _network_classes(args.reference)
    (x_train, t_train), _ = load_digits()
    if args.batch > x_train.shape[0]:
        raise CommandError(f"--batch {args.batch} exceeds the {x_train.shape[0]} training samples")
    dtype = np.dtype(args.dtype).type
    network = TwoLayerNet(x_train.shape[1], args.hidden, 10, dtype=dtype, seed=args.seed)
    x, t = x_train[:args.batch], t_train[:args.batch]
    kind = "reference (numpy)" if args.reference else "compiled"
    print(f"gradient check: {kind} TwoLayerNet {x.shape[1]}-{args.hidden}-10 {args.dtype}, "
          f"{args.batch} digit samples")
    return _gradcheck.report(network, x, t)


def main(argv=None):
    """Run the ``fastmlp`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (CommandError, _plot.MatplotlibMissing) as exc:
        print(f"fastmlp {args.command}: error: {exc}", file=sys.stderr)
        _abort_job(args, 1)
        return 1
    except KeyboardInterrupt:
        print(f"fastmlp {args.command}: interrupted", file=sys.stderr)
        _abort_job(args, 130)
        return 130
    except BaseException as exc:
        status = exc.code if isinstance(exc, SystemExit) else 1
        if getattr(args, "distributed", False) and status:   # say why, then end the whole job
            import traceback
            traceback.print_exc()
            _abort_job(args, status if isinstance(status, int) else 1)
        raise
