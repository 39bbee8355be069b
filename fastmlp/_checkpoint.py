"""Checkpoints of a Trainer's run at an epoch's end, and resuming from one.

A checkpoint ``FILE`` is two files:

``FILE``
    The network and the optimizer (its hyper-parameters, learning rate after any
    decay, step count and state) in :func:`fastmlp.save`'s format:
    ``fastmlp.load(FILE, with_optimizer=True)`` reads it like any saved model.
``FILE.state.json``
    The trainer's position: steps and epochs done, the loss and accuracy
    histories, the shuffled stream's permutation, position in it and random
    generator state, the run's settings (checked on resume) and the SHA-256 of
    the ``FILE`` it belongs to.

Written all or nothing: the model goes to ``FILE.next`` first, then the state
file (naming the new model's checksum) replaces the old one atomically, then
``FILE.next`` is renamed to ``FILE``. A crash between the last two steps leaves
a state file that matches ``FILE.next``, and :func:`load_checkpoint` takes that
one. A resumed run then takes the same mini-batches, in the same order, with the
same parameters and optimizer state as the run it continues, so it ends with the
bits an uninterrupted run ends with.

The position read here is the Trainer's ``_stream`` (``perm``, ``pos``, ``rng``,
``_next_perm``: :class:`fastmlp._loop.ShuffledStream` and its subclasses).
"""
import hashlib
import json
import os

import numpy as np

from ._files import open_regular, replace_atomically

__all__ = ["checkpointing", "load_checkpoint", "restore", "save_checkpoint", "snapshotting"]

STATE_SUFFIX = ".state.json"
NEXT_SUFFIX = ".next"
_STATE_FORMAT = "fastmlp-checkpoint"


def _sha256(path):
    digest = hashlib.sha256()
    with open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def trainer_state(trainer, settings):
    """The JSON-able position of ``trainer`` (see the module docstring)."""
    stream = trainer._stream
    nxt = getattr(stream, "_next_perm", None)
    return {
        "format": _STATE_FORMAT, "format_version": 1, "settings": settings,
        "current_iter": trainer.current_iter, "current_epoch": trainer.current_epoch,
        "full_test_acc_at": trainer._full_test_acc_at,
        "train_loss_list": [float(v) for v in trainer.train_loss_list],
        "train_acc_list": [float(v) for v in trainer.train_acc_list],
        "test_acc_list": [float(v) for v in trainer.test_acc_list],
        "perm": np.asarray(stream.perm).tolist(), "pos": int(stream.pos),
        "next_perm": None if nxt is None else np.asarray(nxt).tolist(),
        "rng": stream.rng.bit_generator.state,
    }


def save_checkpoint(trainer, path, settings):
    """Write ``trainer``'s network, optimizer and position to ``path`` (+ ``.state.json``)."""
    from .io import save
    path = os.fspath(path)
    model_next = path + NEXT_SUFFIX
    save(trainer.network, model_next, optimizer=trainer.optimizer)
    state = trainer_state(trainer, settings)
    state["model_sha256"] = _sha256(model_next)
    text = json.dumps(state, allow_nan=False, separators=(",", ":")).encode("utf-8")
    replace_atomically(path + STATE_SUFFIX, lambda fh: fh.write(text))
    os.replace(model_next, path)


def load_checkpoint(path):
    """``(network, optimizer, state)`` from a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    FileNotFoundError
        If ``path`` or its state file is missing.
    ValueError
        If the state file is not a checkpoint state, or neither ``path`` nor
        ``path.next`` is the model it names (a different or damaged model file).
    """
    from .io import load
    path = os.fspath(path)
    state_path = path + STATE_SUFFIX
    try:
        with open_regular(state_path) as fh:
            state = json.loads(fh.read(64 << 20).decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{state_path}: no such file (a checkpoint is {path} and "
                                f"{state_path}, written by --checkpoint)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{state_path}: not a fastmlp checkpoint state ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT \
            or state.get("format_version") != 1:
        raise ValueError(f"{state_path}: not a fastmlp checkpoint state (format version 1)")
    for model in (path, path + NEXT_SUFFIX):   # .next: a crash before its rename
        if os.path.exists(model) and _sha256(model) == state.get("model_sha256"):
            network, optimizer = load(model, with_optimizer=True)
            return network, optimizer, state
    raise ValueError(f"{path}: the model file is not the one {state_path} was written with "
                     f"(changed or damaged since)")


def restore(trainer, network, optimizer, state):
    """Put ``trainer`` where the checkpoint left it: parameters copied in place (the layers
    keep their references), the optimizer replaced, histories and stream position set."""
    for name, value in network.params.items():
        np.copyto(trainer.network.params[name], value)
    trainer.optimizer = optimizer
    trainer.current_iter = int(state["current_iter"])
    trainer.current_epoch = int(state["current_epoch"])
    trainer._full_test_acc_at = state["full_test_acc_at"]
    trainer.train_loss_list = list(state["train_loss_list"])
    trainer.train_acc_list = list(state["train_acc_list"])
    trainer.test_acc_list = list(state["test_acc_list"])
    stream = trainer._stream
    perm = np.asarray(state["perm"], dtype=np.intp)
    if perm.shape != np.shape(stream.perm):
        raise ValueError(f"the checkpoint's run had {perm.size} training samples, this one "
                         f"has {np.size(stream.perm)}")
    stream.perm, stream.pos = perm, int(state["pos"])
    nxt = state["next_perm"]
    stream._next_perm = None if nxt is None else np.asarray(nxt, dtype=np.intp)
    stream._drawn = None
    stream.rng.bit_generator.state = state["rng"]


def checkpointing(trainer_class, path, settings, write=True):
    """A subclass of ``trainer_class`` that writes a checkpoint to ``path`` at every epoch's
    end (only where ``write`` is true: rank 0 of a data-parallel job)."""

    class Checkpointing(trainer_class):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.sampling != "epoch":   # before any step: the book's draws are global state
                raise ValueError("checkpoints need a Trainer with sampling='epoch'")

        def end_epoch(self, critical):
            super().end_epoch(critical)
            if write:
                save_checkpoint(self, path, settings)

    Checkpointing.__name__ = Checkpointing.__qualname__ = f"Checkpointing{trainer_class.__name__}"
    return Checkpointing


def snapshotting(trainer_class):
    """A subclass of ``trainer_class`` that keeps a copy of the network's parameters as they
    were at the last epoch's end, so that a run interrupted mid-epoch can save its last
    completed epoch (``fastmlp train --save`` on Ctrl-C). The copy is taken inside the
    epoch's last step's critical section, so a Ctrl-C never leaves it half made."""

    class Snapshotting(trainer_class):
        #: ``(epoch, {name: array copy})`` of the last epoch's end, or None before the first
        epoch_snapshot = None

        def end_epoch(self, critical):
            super().end_epoch(critical)
            self.take_snapshot()

        def take_snapshot(self):
            """Copy the parameters now, as those of epoch ``current_epoch``."""
            self.epoch_snapshot = (self.current_epoch, {
                name: np.array(value, copy=True) for name, value in self.network.params.items()})

    Snapshotting.__name__ = Snapshotting.__qualname__ = f"Snapshotting{trainer_class.__name__}"
    return Snapshotting
