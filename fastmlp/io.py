"""Save and load fastmlp models in a portable file with no pickle inside.

``save(model, path, optimizer=None)`` writes a network (``MultiLayerNet``,
``MultiLayerNetExtend`` with its batch-norm running statistics, or ``TwoLayerNet``,
compiled or reference) or a fitted ``MLPClassifier`` /
``MLPRegressor``; ``load(path)`` gives it back with the same class, dtype,
shapes and bit-identical parameters, so ``predict`` after ``load`` returns
exactly the bits it returned before ``save``.

The file (format "fastmlp", version 1) is a ZIP archive of uncompressed members:

``header.json``
    UTF-8 JSON, strict (no NaN/Infinity literals)::

        {"format": "fastmlp", "format_version": 1, "fastmlp_version": "0.1.0",
         "kind": "network" | "estimator",
         "model": {...},            # class, implementation, constructor config, ...
         "optimizer": {...} | null, # class, hyper-parameters, step count
         "arrays": {"network/W1": {"dtype": "<f8", "shape": [64, 100],
                                   "sha256": "..."}, ...}}

``arrays/<name>.npy``
    One member per entry of ``arrays``, in numpy's ``.npy`` format, read with
    ``allow_pickle=False``. Its dtype and shape must match the header and the
    SHA-256 of its C-order bytes must match ``sha256``.

The records come from the objects' own protocol (``fastmlp._records``:
``net.config()`` / ``from_config``, ``opt.state_dict()`` / ``load_state_dict``;
an estimator's ``to_record`` / ``check_record`` / ``from_record``); this
module keeps the container, the header and the hardened reader.

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
blocks); it refuses compressed or encrypted members, so nothing is
decompressed; and it bounds every size before allocating: the ZIP directory
(at most 10,000 members, 4 MiB), each member by the file's own size,
``header.json`` (16 MiB), and each array by the dtype and shape the header
declares. The whole model description is validated first, every value the way
the class's constructor validates it (a NaN ``alpha``, a negative learning
rate, a step count beyond 2**53 are errors), and the array shapes it implies
(``W{i}`` is ``(sizes[i-1], sizes[i])``) must match the array table before
any array is read or any network built, so memory use stays within a small
multiple of the file's size and a short header cannot make it allocate a big
network. A network file must say whether it holds an optimizer. Every failure
is ``FileNotFoundError`` (missing) or ``ValueError`` naming the file (never a
raw zip, zlib, JSON, struct or memory error); ``PermissionError`` passes
through. ``save`` writes a fresh temporary made with ``tempfile.mkstemp``
(``O_EXCL``: it never follows a planted symlink), fsyncs it and renames it over
the target, removing it on any failure (Ctrl-C included).
"""
import hashlib
import io as _io
import json
import math
import os
import re
import struct
import sys
import zipfile
import zlib

import numpy as np

from ._files import open_regular, replace_atomically
from ._records import (MAX_SIZE, count, network_arrays, network_from_record, network_record,
                       optimizer_from_record, optimizer_plan, optimizer_record, prefixed,
                       record)
from ._version import __version__

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load", "save"]

FORMAT_NAME = "fastmlp"
FORMAT_VERSION = 1

_HEADER = "header.json"
_ARRAY_DIR = "arrays/"
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*$")
_MAX_HEADER_BYTES = 16 << 20     # header.json (JSON expands ~20x in memory at worst)
_NPY_HEADER_SLACK = 1 << 16      # an .npy member may exceed its data by its own header only
_MAX_MEMBERS = 10_000            # members of the archive, entries of the array table
_MAX_DIRECTORY_BYTES = 4 << 20   # the ZIP central directory
_MAX_NAME = 256                  # characters of an array name
_MAX_NDIM = 32
_SAFE_KINDS = "biufU"            # bool, ints, floats, unicode: never objects or records


# ----------------------------------------------------------------------------- estimators
# Class names in a file are looked up in fixed tables of public classes (networks and
# optimizers: fastmlp._records); nothing else is ever imported or called.

def _estimator_classes():
    """The fixed table of estimator classes (imported on first use: they need scikit-learn)."""
    from .estimator import MLPClassifier, MLPRegressor
    return {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}


def _estimator_class(name):
    if not isinstance(name, str):
        raise ValueError("the estimator class must be a string")
    table = _estimator_classes()
    if name not in table:
        raise ValueError(f"unknown estimator class {name!r:.60}")
    return table[name]


# ----------------------------------------------------------------------------- save

def save(model, path, optimizer=None):
    """Write ``model`` (and optionally an optimizer's state) to ``path``; no pickle involved.

    Parameters
    ----------
    model : MultiLayerNet, MultiLayerNetExtend, TwoLayerNet (compiled or reference), or a fitted
        MLPClassifier / MLPRegressor
    path : str or os.PathLike
        The file to write (replaced atomically if it exists). No extension is
        added; ``.fmlp`` is a good one.
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
    arrays = {}
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "fastmlp_version": __version__}
    if _is_estimator(model):
        if optimizer is not None:
            raise ValueError("an estimator saves its own optimizer state; pass optimizer=None")
        header["kind"] = "estimator"
        header["model"] = model.to_record(arrays)
        header["optimizer"] = None
    else:
        header["kind"] = "network"
        header["model"] = network_record(model, "network", arrays, extended=True)
        header["optimizer"] = (None if optimizer is None
                               else optimizer_record(optimizer, "optimizer", arrays))
    specs = {}
    blobs = {}
    for name, a in arrays.items():
        if not _NAME_RE.match(name):
            raise ValueError(f"array name {name!r} is not storable")
        a = np.ascontiguousarray(a)
        if a.dtype.kind not in _SAFE_KINDS:
            raise TypeError(f"array {name!r} has dtype {a.dtype}, which this format does not hold")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        buf = _io.BytesIO()
        np.lib.format.write_array(buf, a, version=(1, 0), allow_pickle=False)
        blobs[name] = buf.getvalue()
        specs[name] = {"dtype": a.dtype.str, "shape": list(a.shape),
                       "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    header["arrays"] = specs
    text = json.dumps(header, allow_nan=False, indent=1, sort_keys=False).encode("utf-8")
    # What load will read back, checked by load's own rules: a model whose public
    # attributes were changed into something load refuses is refused here, not later.
    try:
        written = json.loads(text)
        _check_header_start(written)
        _check_table(_plan(written), _array_table(written["arrays"]))
    except ValueError as exc:
        raise ValueError(f"cannot save this model, its file would not load: {exc}") from None

    def write(fh):
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(_info(_HEADER), text)
            for name, blob in blobs.items():
                zf.writestr(_info(f"{_ARRAY_DIR}{name}.npy"), blob)

    replace_atomically(path, write)


def _info(name):
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _is_estimator(model):
    """Whether ``model`` is one of fastmlp's estimators; saving a network never imports the
    estimators (nor scikit-learn): if they are not loaded, ``model`` is not one."""
    return "fastmlp.estimator" in sys.modules and type(model) in _estimator_classes().values()


# ----------------------------------------------------------------------------- load

_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, struct.error, UnicodeDecodeError,
                NotImplementedError, RuntimeError, OverflowError, MemoryError, KeyError,
                IndexError, TypeError, ValueError, AttributeError, OSError, RecursionError)


def load(path, *, with_optimizer=False):
    """Read a model written by :func:`save`.

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
        expected stored members (a pickle, a compressed member, say), holds a
        value its class's constructor would reject, or was written in a
        newer format version. The message names the file and the problem.
    """
    path = os.fspath(path)
    try:
        with _open_regular(path) as f:
            header, arrays, plan = _read(f, os.fstat(f.fileno()).st_size)
        model, optimizer = _build(header, arrays, plan)
    except (FileNotFoundError, PermissionError, ImportError):
        raise
    except _Invalid as exc:
        raise ValueError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: invalid model description in the file: {exc}") from None
    except _READ_ERRORS as exc:
        raise ValueError(f"{path}: not a readable fastmlp model file (truncated or "
                         f"corrupted?): {type(exc).__name__}: {exc}") from None
    return (model, optimizer) if with_optimizer else model


class _Invalid(ValueError):
    """A problem whose message already says what is wrong with the file."""


def _open_regular(path):
    """``path`` opened for reading if it is a regular file, else ValueError (never blocks)."""
    try:
        return open_regular(path)
    except ValueError as exc:
        raise _Invalid(f"{exc}: not a fastmlp model file (only regular files are read)") from None


_EOCD = struct.Struct("<4s4H2LH")          # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def _check_directory(f, size):
    """Bound the ZIP central directory (entries, bytes) before zipfile parses it.

    Finds the end record the way zipfile does; anything zipfile would not find
    is left for it to reject.
    """
    tail_len = min(size, _EOCD.size + (1 << 16))
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    pos = len(tail) - _EOCD.size
    if not (pos >= 0 and tail[pos:pos + 4] == b"PK\x05\x06" and tail[-2:] == b"\0\0"):
        pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < _EOCD.size:
        raise _Invalid("not a fastmlp model file (not a zip archive, or truncated)")
    entries, cd_size = _EOCD.unpack_from(tail, pos)[4:6]
    loc = pos - _ZIP64_LOCATOR.size
    if loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07":
        rec = loc - _ZIP64_EOCD.size
        if rec < 0 or tail[rec:rec + 4] != b"PK\x06\x06":
            raise _Invalid("corrupt ZIP64 end of central directory")
        entries, _, cd_size = _ZIP64_EOCD.unpack_from(tail, rec)[6:9]
    if entries > _MAX_MEMBERS:
        raise _Invalid(f"too many members ({entries}; a fastmlp file holds at most "
                       f"{_MAX_MEMBERS})")
    if cd_size > min(size, _MAX_DIRECTORY_BYTES):
        raise _Invalid(f"the ZIP central directory claims {cd_size} bytes (the file has "
                       f"{size}): corrupt or not a fastmlp model file")


def _read(f, size):
    """(header, {name: ndarray}, plan) from an open regular file of ``size`` bytes.

    Every size is bounded before anything is allocated: the directory by
    :func:`_check_directory`, each member by the file size, the header by
    ``_MAX_HEADER_BYTES``, each array by the dtype and shape the header declares,
    and those by what the model description needs.
    """
    _check_directory(f, size)
    f.seek(0)
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile:
        raise _Invalid("not a fastmlp model file (not a zip archive, or truncated)") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise _Invalid(f"too many members ({len(infos)})")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise _Invalid("duplicate members in the archive")
        total = 0
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED:
                raise _Invalid(f"member {info.filename!r:.100} is compressed (method "
                               f"{info.compress_type}); fastmlp files hold stored members only")
            if info.flag_bits & 0x1:
                raise _Invalid(f"member {info.filename!r:.100} is encrypted")
            if (info.file_size != info.compress_size
                    or info.header_offset + info.compress_size > size):
                raise _Invalid(f"member {info.filename!r:.100} claims {info.file_size} bytes, "
                               f"more than the file holds (truncated or corrupt)")
            total += info.file_size
        if total > size:
            raise _Invalid(f"the members claim {total} bytes, more than the file's {size}")
        by_name = dict(zip(names, infos))
        if _HEADER not in by_name:
            raise _Invalid(f"not a fastmlp model file (no {_HEADER})")
        if by_name[_HEADER].file_size > _MAX_HEADER_BYTES:
            raise _Invalid(f"{_HEADER} is implausibly large ({by_name[_HEADER].file_size} bytes; "
                           f"at most {_MAX_HEADER_BYTES})")
        try:
            header = json.loads(zf.read(_HEADER).decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise _Invalid(f"{_HEADER} is not valid JSON ({exc})") from None
        except RecursionError:
            raise _Invalid(f"{_HEADER} is nested too deeply") from None
        _check_header_start(header)
        specs = _array_table(header["arrays"])
        expected = {_HEADER} | {f"{_ARRAY_DIR}{n}.npy" for n in specs}
        unexpected = sorted(set(names) - expected)
        if unexpected:
            raise _Invalid(f"unexpected members {[u[:100] for u in unexpected[:5]]} (a fastmlp "
                           f"file holds only {_HEADER} and .npy arrays; refusing to load)")
        missing = sorted(expected - set(names))
        if missing:
            raise _Invalid(f"missing members {missing[:5]}")
        # The model description, checked against the array table before any array is read.
        plan = _plan(header)
        _check_table(plan, specs)
        arrays = {}
        for name, spec in specs.items():
            arrays[name] = _read_array(zf, by_name[f"{_ARRAY_DIR}{name}.npy"], name, *spec)
    return header, arrays, plan


def _check_table(plan, specs):
    """The array table ``specs`` holds exactly the arrays the model description needs."""
    for name, (dtype, shape) in plan["arrays"].items():
        if name not in specs:
            raise ValueError(f"array {name} is missing from the array table")
        got = specs[name]
        if (dtype is not None and got[0] != dtype) or (shape is not None and got[1] != shape):
            raise ValueError(f"array {name} is declared {got[0].str}{got[1]}, the model "
                             f"needs {'' if dtype is None else dtype.str}"
                             f"{'' if shape is None else shape}")
    extra = sorted(set(specs) - set(plan["arrays"]))
    if extra:
        raise ValueError(f"arrays {extra[:5]} are not part of the model")


def _check_header_start(header):
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise _Invalid(f"not a fastmlp model file (format is "
                       f"{header.get('format') if isinstance(header, dict) else None!r:.60})")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _Invalid(f"invalid format_version {version!r:.60}")
    if version > FORMAT_VERSION:
        raise _Invalid(f"written in fastmlp format version {version} (by fastmlp "
                       f"{header.get('fastmlp_version')!s:.40}); this fastmlp "
                       f"({__version__}) reads version {FORMAT_VERSION}: upgrade fastmlp")
    if header.get("kind") not in ("network", "estimator"):
        raise _Invalid(f"unknown model kind {header.get('kind')!r:.60}")
    record(header, ("format", "format_version", "fastmlp_version", "kind", "model", "optimizer",
                     "arrays"), "the header")
    if not isinstance(header["arrays"], dict):
        raise _Invalid("the header has no array table")


_DTYPE_RE = re.compile(r"^[<>|=]?[biufU][0-9]{1,4}$")


def _array_table(table):
    """{name: (dtype, shape, nbytes, sha256)} from the header's array table, every size bounded."""
    if len(table) > _MAX_MEMBERS:
        raise _Invalid(f"the array table lists {len(table)} arrays")
    specs = {}
    for name, spec in table.items():
        if len(name) > _MAX_NAME or not _NAME_RE.match(name):
            raise _Invalid(f"invalid array name {name!r:.100}")
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "sha256"}:
            raise _Invalid(f"invalid entry for array {name}")
        dtype_str, shape, digest = spec["dtype"], spec["shape"], spec["sha256"]
        if not isinstance(dtype_str, str) or not _DTYPE_RE.match(dtype_str):
            raise _Invalid(f"array {name}: dtype {dtype_str!r:.60} is not allowed")
        try:
            dtype = np.dtype(dtype_str)
        except TypeError:
            raise _Invalid(f"array {name}: invalid dtype {dtype_str!r}") from None
        if dtype.kind not in _SAFE_KINDS or dtype.itemsize == 0:
            raise _Invalid(f"array {name}: dtype {dtype_str!r} is not allowed")
        if not isinstance(shape, list) or len(shape) > _MAX_NDIM:
            raise _Invalid(f"array {name}: invalid shape")
        shape = tuple(count(s, f"array {name} shape entry", MAX_SIZE) for s in shape)
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise _Invalid(f"array {name}: invalid sha256")
        specs[name] = (dtype, shape, dtype.itemsize * math.prod(shape), digest)
    return specs


def _read_array(zf, info, name, dtype, shape, nbytes, digest):
    # The member must hold exactly the declared array: an .npy header, then nbytes of data.
    if not nbytes + 10 <= info.file_size <= nbytes + _NPY_HEADER_SLACK:
        raise _Invalid(f"array {name}: member holds {info.file_size} bytes, the header declares "
                       f"{dtype.str}{shape} ({nbytes} bytes of data)")
    data = zf.read(info)          # exactly file_size bytes, zip CRC checked
    buf = _io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, TypeError, struct.error) as exc:
        raise _Invalid(f"array {name}: not a plain .npy array ({exc})") from None
    if got_dtype != dtype or tuple(got_shape) != shape or fortran:
        raise _Invalid(f"array {name}: holds {got_dtype.str}{tuple(got_shape)}"
                       f"{' (Fortran order)' if fortran else ''}, the header says "
                       f"{dtype.str}{shape}")
    offset = buf.tell()
    if len(data) - offset != nbytes:
        raise _Invalid(f"array {name}: member holds {len(data) - offset} bytes of data, "
                       f"{dtype.str}{shape} needs {nbytes}")
    if hashlib.sha256(memoryview(data)[offset:]).hexdigest() != digest:
        raise _Invalid(f"array {name}: SHA-256 checksum mismatch (the file was altered or "
                       f"corrupted)")
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=offset)
    return arr.reshape(shape).copy()      # writable, owns its memory


# ----------------------------------------------------------------------------- model description

def _plan(header):
    """Check the whole model description; nothing big is allocated.

    Returns ``{"arrays": {name: (dtype or None, shape or None)}, ...}``: every array the
    model needs, with the dtype and shape its description implies.
    """
    rec = header["model"]
    if header["kind"] == "network":
        params, needed = network_arrays(rec, extended=True)
        arrays = prefixed("network", needed)
        opt_rec = header["optimizer"]
        if opt_rec is not None:
            arrays.update(optimizer_plan(opt_rec, "optimizer", params)[3])
        return {"arrays": arrays, "params": params}
    if header["optimizer"] is not None:
        raise ValueError("an estimator file keeps its optimizer in the model record; the "
                         "header's 'optimizer' must be null")
    record(rec, ("class",), "the estimator record",
           optional=("params", "params_not_saved", "state", "network", "optimizer"))
    return {"arrays": _estimator_class(rec["class"]).check_record(rec)}


def _build(header, arrays, plan):
    if header["kind"] == "network":
        model = network_from_record(header["model"], arrays, "network", extended=True)
        rec = header["optimizer"]
        optimizer = (None if rec is None else
                     optimizer_from_record(rec, arrays, "optimizer", params=plan["params"]))
        return model, optimizer
    rec = header["model"]
    return _estimator_class(rec["class"]).from_record(rec, arrays), None
