"""Save and load fastmlp models in a portable file with no pickle inside.

``save(model, path, optimizer=None)`` writes a network (``MultiLayerNet`` or
``TwoLayerNet``, compiled or reference) or a fitted ``MLPClassifier`` /
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

Loading never unpickles or imports anything named by the file (class names
are looked up in a fixed table), so a file from an untrusted source cannot
run code. A truncated, corrupted or altered file, another format or a newer
format version raises ``ValueError`` naming the file and the problem; a
missing file raises ``FileNotFoundError``. The checksums detect corruption;
they are not a signature (whoever edits a file can recompute them).
"""
import hashlib
import io as _io
import json
import math
import os
import re
import struct
import zipfile
import zlib

import numpy as np

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "load", "save"]

FORMAT_NAME = "fastmlp"
FORMAT_VERSION = 1

_HEADER = "header.json"
_ARRAY_DIR = "arrays/"
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*$")
_MAX_HEADER_BYTES = 64 << 20
_NPY_HEADER_SLACK = 1 << 16      # an .npy member may exceed its data by its own header only
_MAX_MEMBERS = 100_000
_SAFE_KINDS = "biufU"            # bool, ints, floats, unicode: never objects or records


# ----------------------------------------------------------------------------- registries
# Class names in a file are looked up here; nothing else is ever imported or called.

def _network_classes():
    from . import networks, reference
    return {("MultiLayerNet", "compiled"): networks.MultiLayerNet,
            ("TwoLayerNet", "compiled"): networks.TwoLayerNet,
            ("MultiLayerNet", "reference"): reference.MultiLayerNet,
            ("TwoLayerNet", "reference"): reference.TwoLayerNet}


def _optimizer_classes():
    from . import optimizers
    from .reference import optimizers as ref
    table = {}
    for name in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"):
        table[(name, "compiled")] = getattr(optimizers, name)
        table[(name, "reference")] = getattr(ref, name)
    return table


def _estimator_optimizer_classes():
    from . import estimator
    return {("Adam", "estimator"): estimator._Adam,
            ("SGDNesterov", "estimator"): estimator._SGDNesterov}


def _estimator_classes():
    from . import estimator
    return {"MLPClassifier": estimator.MLPClassifier, "MLPRegressor": estimator.MLPRegressor}


def _lookup(table, key, what):
    for k, cls in table.items():
        if k == key:
            return cls
    raise ValueError(f"unknown {what} {key!r}")


def _key_of(obj, table):
    for k, cls in table.items():
        if type(obj) is cls:
            return k
    return None


# ----------------------------------------------------------------------------- JSON values

def jfloat(x):
    """A float for strict JSON: non-finite values become the strings 'NaN', 'Infinity', '-Infinity'."""
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def pfloat(v):
    """Inverse of :func:`jfloat`."""
    if v is None:
        return None
    if isinstance(v, str):
        if v not in ("NaN", "Infinity", "-Infinity"):
            raise ValueError(f"expected a number, got {v!r}")
        return float(v.replace("Infinity", "inf"))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


def _check_int(v, what, minimum=0):
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {v!r}")
    return v


# ----------------------------------------------------------------------------- networks and optimizers

def network_record(net, prefix, arrays):
    """(record, arrays[prefix/...] filled) for a compiled or reference network."""
    key = _key_of(net, _network_classes())
    if key is None:
        raise TypeError(f"save supports fastmlp's MultiLayerNet and TwoLayerNet (compiled or "
                        f"fastmlp.reference) and fitted MLPClassifier/MLPRegressor, "
                        f"got {type(net).__module__}.{type(net).__name__}")
    dtype = np.dtype(net.dtype)
    if key[0] == "TwoLayerNet":
        config = {"input_size": net.input_size, "hidden_size": net.hidden_size,
                  "output_size": net.output_size, "dtype": dtype.name}
    else:
        config = {"input_size": net.input_size, "hidden_size_list": list(net.hidden_size_list),
                  "output_size": net.output_size, "activation": net.activation,
                  "weight_decay_lambda": jfloat(net.weight_decay_lambda), "dtype": dtype.name,
                  "loss": getattr(net, "loss_name", "cross_entropy")}
    for name, p in net.params.items():
        if not isinstance(p, np.ndarray) or p.dtype != dtype:
            raise TypeError(f"network parameter {name!r} is not a {dtype.name} array")
        arrays[f"{prefix}/{name}"] = p
    return {"class": key[0], "implementation": key[1], "config": config,
            "params": list(net.params)}


def network_from_record(rec, arrays, prefix):
    cls = _lookup(_network_classes(), (rec["class"], rec["implementation"]), "network class")
    cfg = dict(rec["config"])
    dtype = _float_dtype(cfg.pop("dtype"))
    if rec["class"] == "TwoLayerNet":
        net = cls(cfg["input_size"], cfg["hidden_size"], cfg["output_size"], dtype=dtype, seed=0)
    else:
        net = cls(cfg["input_size"], cfg["hidden_size_list"], cfg["output_size"],
                  activation=cfg["activation"], weight_init_std=0.0,
                  weight_decay_lambda=pfloat(cfg["weight_decay_lambda"]), dtype=dtype, seed=0,
                  loss=cfg["loss"])
    if list(rec["params"]) != list(net.params):
        raise ValueError(f"parameters {rec['params']} do not match the network's {list(net.params)}")
    for name, p in net.params.items():
        a = arrays[f"{prefix}/{name}"]
        if a.shape != p.shape or a.dtype != p.dtype:
            raise ValueError(f"parameter {name} has {a.dtype}{a.shape}, the network needs "
                             f"{p.dtype}{p.shape}")
        np.copyto(p, a)
    return net


def _float_dtype(name):
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {name!r}")
    return np.dtype(name).type


_HYPER = ("lr", "momentum", "decay_rate", "beta1", "beta2", "epsilon")
_STATE = ("m", "v", "h")


def optimizer_record(opt, prefix, arrays, allow_estimator=False):
    """(record, arrays filled) for one of fastmlp's optimizers and its state."""
    tables = [_optimizer_classes()] + ([_estimator_optimizer_classes()] if allow_estimator else [])
    key = None
    for table in tables:
        key = key or _key_of(opt, table)
    if key is None:
        raise TypeError(f"optimizer must be one of fastmlp's optimizers (fastmlp.optimizers or "
                        f"fastmlp.reference.optimizers), got {type(opt).__name__}")
    hyper = {h: jfloat(getattr(opt, h)) for h in _HYPER if hasattr(opt, h)}
    state = {}
    for s in _STATE:
        value = getattr(opt, s, None)
        if isinstance(value, dict):
            state[s] = list(value)
            for k, a in value.items():
                arrays[f"{prefix}/{s}/{k}"] = np.asarray(a)
    rec = {"class": key[0], "implementation": key[1], "hyper": hyper, "state": state}
    if hasattr(opt, "iter"):
        rec["iter"] = int(opt.iter)
    return rec


def optimizer_from_record(rec, arrays, prefix, allow_estimator=False):
    key = (rec["class"], rec["implementation"])
    table = dict(_optimizer_classes())
    if allow_estimator:
        table.update(_estimator_optimizer_classes())
    cls = _lookup(table, key, "optimizer class")
    hyper = {k: pfloat(v) for k, v in rec["hyper"].items()}
    if not set(hyper) <= set(_HYPER):
        raise ValueError(f"unknown optimizer hyper-parameters {sorted(set(hyper) - set(_HYPER))}")
    import inspect
    accepted = inspect.signature(cls.__init__).parameters
    opt = cls(**{k: v for k, v in hyper.items() if k in accepted})
    for k, v in hyper.items():
        if k not in accepted:
            setattr(opt, k, v)
    if "iter" in rec:
        opt.iter = _check_int(rec["iter"], "optimizer iter")
    for s, keys in rec["state"].items():
        if s not in _STATE or not hasattr(opt, s):
            raise ValueError(f"optimizer {rec['class']} has no state {s!r}")
        setattr(opt, s, {k: np.array(arrays[f"{prefix}/{s}/{k}"], copy=True) for k in keys})
    return opt


# ----------------------------------------------------------------------------- save

def save(model, path, optimizer=None):
    """Write ``model`` (and optionally an optimizer's state) to ``path``; no pickle involved.

    Parameters
    ----------
    model : MultiLayerNet, TwoLayerNet (compiled or reference), or a fitted
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
              "fastmlp_version": _fastmlp_version()}
    est_classes = _estimator_classes_if_loaded(model)
    if est_classes is not None:
        if optimizer is not None:
            raise ValueError("an estimator saves its own optimizer state; pass optimizer=None")
        header["kind"] = "estimator"
        header["model"] = model._export_state(arrays)
        header["optimizer"] = None
    else:
        header["kind"] = "network"
        header["model"] = network_record(model, "network", arrays)
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

    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(_info(_HEADER), text)
            for name, blob in blobs.items():
                zf.writestr(_info(f"{_ARRAY_DIR}{name}.npy"), blob)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _info(name):
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def _fastmlp_version():
    from . import __version__
    return __version__


def _estimator_classes_if_loaded(model):
    """The estimator table when ``model`` is one of fastmlp's estimators (without importing
    sklearn for a network)."""
    import sys
    mod = sys.modules.get("fastmlp.estimator")
    if mod is None or type(model) not in (mod.MLPClassifier, mod.MLPRegressor):
        return None
    return _estimator_classes()


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
        If the file is not a fastmlp model file, is truncated, corrupted or
        altered (a checksum or size does not match), holds anything but the
        expected members (a pickle, say), or was written in a newer format
        version.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:   # FileNotFoundError / IsADirectoryError propagate as they are
        try:
            header, arrays = _read(f)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        except _READ_ERRORS as exc:
            raise ValueError(f"{path}: not a readable fastmlp model file (truncated or "
                             f"corrupted?): {type(exc).__name__}: {exc}") from None
    try:
        model, optimizer = _build(header, arrays)
    except ImportError:
        raise
    except (_READ_ERRORS + (LookupError,)) as exc:
        raise ValueError(f"{path}: invalid model description in the file: "
                         f"{type(exc).__name__}: {exc}") from None
    return (model, optimizer) if with_optimizer else model


def _read(f):
    """(header dict, {name: ndarray}) from an open file; ValueError for anything unexpected."""
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile:
        raise ValueError("not a fastmlp model file (not a zip archive, or truncated)") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise ValueError("too many members")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise ValueError("duplicate members in the archive")
        by_name = dict(zip(names, infos))
        if _HEADER not in by_name:
            raise ValueError(f"not a fastmlp model file (no {_HEADER})")
        if by_name[_HEADER].file_size > _MAX_HEADER_BYTES:
            raise ValueError(f"{_HEADER} is implausibly large")
        try:
            header = json.loads(zf.read(_HEADER).decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{_HEADER} is not valid JSON ({exc})") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise ValueError(f"not a fastmlp model file (format is "
                             f"{header.get('format') if isinstance(header, dict) else None!r})")
        version = header.get("format_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"invalid format_version {version!r}")
        if version > FORMAT_VERSION:
            raise ValueError(f"written in fastmlp format version {version} (by fastmlp "
                             f"{header.get('fastmlp_version')!s}); this fastmlp "
                             f"({_fastmlp_version()}) reads version {FORMAT_VERSION}: upgrade "
                             f"fastmlp")
        if header.get("kind") not in ("network", "estimator"):
            raise ValueError(f"unknown model kind {header.get('kind')!r}")
        specs = header.get("arrays")
        if not isinstance(specs, dict):
            raise ValueError("the header has no array table")
        expected = {_HEADER} | {f"{_ARRAY_DIR}{n}.npy" for n in specs}
        unexpected = sorted(set(names) - expected)
        if unexpected:
            raise ValueError(f"unexpected members {unexpected[:5]} (a fastmlp file holds only "
                             f"{_HEADER} and .npy arrays; refusing to load)")
        missing = sorted(expected - set(names))
        if missing:
            raise ValueError(f"missing members {missing[:5]}")
        arrays = {}
        for name, spec in specs.items():
            arrays[name] = _read_array(zf, by_name[f"{_ARRAY_DIR}{name}.npy"], name, spec)
    return header, arrays


def _read_array(zf, info, name, spec):
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid array name {name!r}")
    if not isinstance(spec, dict):
        raise ValueError(f"invalid entry for array {name}")
    dtype_str, shape, digest = spec.get("dtype"), spec.get("shape"), spec.get("sha256")
    if not isinstance(dtype_str, str) or not isinstance(shape, list) or not isinstance(digest, str):
        raise ValueError(f"invalid entry for array {name}")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError:
        raise ValueError(f"array {name}: invalid dtype {dtype_str!r}") from None
    if dtype.kind not in _SAFE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"array {name}: dtype {dtype_str!r} is not allowed")
    shape = tuple(_check_int(s, f"array {name} shape entry") for s in shape)
    nbytes = dtype.itemsize * math.prod(shape)
    if info.file_size > nbytes + _NPY_HEADER_SLACK:
        raise ValueError(f"array {name}: member is larger than its header says")
    data = zf.read(info)          # checks the zip CRC
    buf = _io.BytesIO(data)
    try:
        arr = np.load(buf, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"array {name}: not a plain .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray) or buf.tell() != len(data):
        raise ValueError(f"array {name}: member holds more than one array")
    if arr.dtype != dtype or arr.shape != shape:
        raise ValueError(f"array {name}: holds {arr.dtype.str}{arr.shape}, the header says "
                         f"{dtype_str}{shape}")
    arr = np.ascontiguousarray(arr)
    if hashlib.sha256(arr.tobytes()).hexdigest() != digest:
        raise ValueError(f"array {name}: SHA-256 checksum mismatch (the file was altered or "
                         f"corrupted)")
    return arr


def _build(header, arrays):
    if header["kind"] == "network":
        model = network_from_record(header["model"], arrays, "network")
        rec = header.get("optimizer")
        optimizer = None if rec is None else optimizer_from_record(rec, arrays, "optimizer")
        return model, optimizer
    rec = header["model"]
    cls = _lookup(_estimator_classes(), rec["class"], "estimator class")
    return cls._import_state(rec, arrays), None
