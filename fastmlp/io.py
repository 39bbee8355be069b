"""Save and load fastmlp models in a portable file with no pickle inside.

``save(model, path, optimizer=None)`` writes a network (``MultiLayerNet``,
``MultiLayerNetExtend`` with its batch-norm running statistics, or ``TwoLayerNet``,
compiled or reference) or a fitted ``MLPClassifier`` /
``MLPRegressor``; ``load(path)`` gives it back with the same class, dtype,
shapes and bit-identical parameters, so ``predict`` after ``load`` returns
exactly the bits it returned before ``save``.

The file (format "fastmlp", version 2) is a safetensors file
(``fastmlp._format_v2``): every array a tensor, and ``__metadata__["fastmlp"]``
the header as JSON::

    {"format": "fastmlp", "format_version": 2, "fastmlp_version": "0.1.0",
     "kind": "network" | "estimator",
     "model": {...},            # class, implementation, constructor config, ...
     "optimizer": {...} | null, # class, hyper-parameters, step count
     "arrays": {"network/W1": {"dtype": "<f8", "shape": [64, 100],
                               "sha256": "..."}, ...},
     "sha256": "..."}           # of the canonical JSON of the rest

so any safetensors reader sees the weights. Version 1 files (a ZIP archive of
``header.json`` and ``.npy`` arrays, written by fastmlp 0.1) still load
(``fastmlp._format_v1``). The records come from the objects' own protocol
(``fastmlp._records``; an estimator's ``to_record`` / ``check_record`` /
``from_record``); ``fastmlp._model_file`` checks them.

Loading never unpickles or imports anything named by the file (class names
are looked up in fixed tables of public classes), so a file from an untrusted
source cannot run code. A truncated, corrupted or altered file, another format or a newer
format version raises ``ValueError`` naming the file and the problem; a
missing file raises ``FileNotFoundError``. The checksums detect corruption;
they are not a signature (whoever edits a file can recompute them).

Loading untrusted files
-----------------------
``load`` is built to be handed any path. It reads regular files only (a
directory, FIFO, device or socket is a ``ValueError``, and opening never
blocks) and bounds every size before allocating: the header (16 MiB, and the
file's size), and each array by the dtype and shape the header declares, which
safetensors checks against the file's offsets. The whole model description is
validated first, every value the way the class's constructor validates it (a
NaN ``alpha``, a negative learning rate, a step count beyond 2**53 are errors),
and the array shapes it implies (``W{i}`` is ``(sizes[i-1], sizes[i])``) must
match the array table before any array is read or any network built, so memory
use stays within a small multiple of the file's size and a short header cannot
make it allocate a big network. A network file must say whether it holds an
optimizer. Every failure is ``FileNotFoundError`` (missing) or ``ValueError``
naming the file (never a raw safetensors, zip, JSON, struct or memory error);
``PermissionError`` passes through. ``save`` writes a fresh temporary made with
``tempfile.mkstemp`` (``O_EXCL``: it never follows a planted symlink), fsyncs it
and renames it over the target, removing it on any failure (Ctrl-C included).
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from typing import Any, Literal, overload

from . import _format_v1, _format_v2
from ._typing import PathLike, SupportsUpdate
from ._files import open_regular, replace_atomically
from ._model_file import (FORMAT_NAME, FORMAT_VERSION, Invalid, build, check_before_writing,
                          make_header)

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load", "save"]


def save(model: Any, path: PathLike, optimizer: SupportsUpdate | None = None) -> None:
    """Write ``model`` (and optionally an optimizer's state) to ``path``; no pickle involved.

    Parameters
    ----------
    model : MultiLayerNet, MultiLayerNetExtend, TwoLayerNet (compiled or reference), or a fitted
        MLPClassifier / MLPRegressor
    path : str or os.PathLike
        The file to write (replaced atomically if it exists). No extension is
        added; ``.safetensors`` is a good one (the file is one).
    optimizer : fastmlp optimizer, optional
        For a network: also save this optimizer's hyper-parameters, step
        count and state (velocities, Adam's moments), so training can resume
        exactly; get it back with ``load(path, with_optimizer=True)``. An
        estimator always saves its own optimizer state (``partial_fit`` and
        ``warm_start`` continue exactly), so this must be None for one.

    Raises
    ------
    TypeError
        For a model or optimizer this format does not hold.
    sklearn.exceptions.NotFittedError
        For an estimator that is not fitted.
    """
    path = os.fspath(path)
    header, arrays = make_header(model, optimizer)
    check_before_writing(json.loads(json.dumps(header, allow_nan=False)))
    replace_atomically(path, lambda fh: _format_v2.write(fh, header, arrays))


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, struct.error, UnicodeDecodeError,
                NotImplementedError, RuntimeError, OverflowError, MemoryError, KeyError,
                IndexError, TypeError, ValueError, AttributeError, OSError, RecursionError)


@overload
def load(path: PathLike, *, with_optimizer: Literal[False] = False) -> Any: ...
@overload
def load(path: PathLike, *, with_optimizer: Literal[True]) -> tuple[Any, Any]: ...
@overload
def load(path: PathLike, *, with_optimizer: bool) -> Any: ...


def load(path: PathLike, *, with_optimizer: bool = False) -> Any:
    """Read a model written by :func:`save` (format version 2, or version 1 of fastmlp 0.1).

    Parameters
    ----------
    path : str or os.PathLike
    with_optimizer : bool, default False
        Return ``(model, optimizer)``: the optimizer saved with a network (a
        fresh instance of its class, with its state and step count), or None
        when none was saved (always None for an estimator, which restores its
        optimizer state inside itself).

    Returns
    -------
    model, or (model, optimizer)
        Same class (compiled or reference), dtype, shapes and bit-identical
        parameters as when saved.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``path`` is not a regular file (a directory, FIFO or device), or
        the file is not a fastmlp model file, is truncated, corrupted or
        altered (a checksum or size does not match), holds anything but the
        expected arrays, holds a value its class's constructor would reject, or
        was written in a newer format version. The message names the file and
        the problem.
    """
    path = os.fspath(path)
    try:
        with _open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            v1 = f.read(len(_format_v1.MAGIC)) == _format_v1.MAGIC
            header, arrays, plan = (_format_v1.read(f, size) if v1
                                    else _format_v2.read(f, path, size))
        model, optimizer = build(header, arrays, plan)
    except (FileNotFoundError, PermissionError, ImportError):
        raise
    except Invalid as exc:
        raise ValueError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: invalid model description in the file: {exc}") from None
    except _READ_ERRORS as exc:
        raise ValueError(f"{path}: not a readable fastmlp model file (truncated or "
                         f"corrupted?): {type(exc).__name__}: {exc}") from None
    return (model, optimizer) if with_optimizer else model


def _open_regular(path):
    """``path`` opened for reading if it is a regular file, else ValueError (never blocks)."""
    try:
        return open_regular(path)
    except ValueError as exc:
        raise Invalid(f"{exc}: not a fastmlp model file (only regular files are read)") from None
