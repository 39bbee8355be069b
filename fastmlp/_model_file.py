"""The model description inside a fastmlp file, whatever its container (``fastmlp.io``).

A file holds a *header* (JSON: format, version, kind, the model's and the optimizer's
records, and an array table ``{name: {"dtype", "shape", "sha256"}}``) and the arrays the
table lists. This module builds the header from a model, checks a header read from a
file (every value, and the arrays it implies, before any array is read) and builds the
model back. The containers (``fastmlp._format_v1``: ZIP of ``.npy``; ``fastmlp._format_v2``:
safetensors) only move bytes.
"""
import hashlib
import math
import re
import sys

import numpy as np

from ._records import (
    MAX_SIZE,
    count,
    network_arrays,
    network_from_record,
    network_record,
    optimizer_from_record,
    optimizer_plan,
    optimizer_record,
    prefixed,
    record,
)
from ._version import __version__

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Invalid", "array_table", "build", "check_header",
           "check_table", "make_header", "plan"]

FORMAT_NAME = "fastmlp"
FORMAT_VERSION = 2
MAX_ARRAYS = 10_000              # entries of the array table
_NAME_RE = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)*$")
_MAX_NAME = 256                  # characters of an array name
_MAX_NDIM = 32
_SAFE_KINDS = "biufU"            # bool, ints, floats, unicode: never objects or records
_DTYPE_RE = re.compile(r"^[<>|=]?[biufU][0-9]{1,4}$")
_HEADER_KEYS = ("format", "format_version", "fastmlp_version", "kind", "model", "optimizer",
                "arrays")


class Invalid(ValueError):
    """A problem whose message already says what is wrong with the file."""


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


def is_estimator(model):
    """Whether ``model`` is one of fastmlp's estimators; saving a network never imports the
    estimators (nor scikit-learn): if they are not loaded, ``model`` is not one."""
    return "fastmlp.estimator" in sys.modules and type(model) in _estimator_classes().values()


# ----------------------------------------------------------------------------- writing

def make_header(model, optimizer):
    """``(header, arrays)`` for ``model`` (and a network's ``optimizer``): the arrays as
    little-endian C-contiguous arrays, each listed in ``header["arrays"]`` with its SHA-256.

    The header is checked by load's own rules, so a model whose public attributes were
    changed into something load refuses is refused here, not later.
    """
    arrays = {}
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "fastmlp_version": __version__}
    if is_estimator(model):
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
    table, stored = {}, {}
    for name, a in arrays.items():
        if not _NAME_RE.match(name):
            raise ValueError(f"array name {name!r} is not storable")
        a = np.ascontiguousarray(a)
        if a.dtype.kind not in _SAFE_KINDS:
            raise TypeError(f"array {name!r} has dtype {a.dtype}, which this format does not hold")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        stored[name] = a
        table[name] = {"dtype": a.dtype.str, "shape": list(a.shape),
                       "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    header["arrays"] = table
    return header, stored


def check_before_writing(header):
    """Raise ValueError if load would refuse ``header`` (after a JSON round trip)."""
    try:
        check_header(header)
        check_table(plan(header), array_table(header["arrays"]))
    except ValueError as exc:
        raise ValueError(f"cannot save this model, its file would not load: {exc}") from None


# ----------------------------------------------------------------------------- reading

def check_header(header):
    """The header's frame: format, a version this fastmlp reads, kind, keys, an array table."""
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise Invalid(f"not a fastmlp model file (format is "
                      f"{header.get('format') if isinstance(header, dict) else None!r:.60})")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Invalid(f"invalid format_version {version!r:.60}")
    if version > FORMAT_VERSION:
        raise Invalid(f"written in fastmlp format version {version} (by fastmlp "
                      f"{header.get('fastmlp_version')!s:.40}); this fastmlp "
                      f"({__version__}) reads versions up to {FORMAT_VERSION}: upgrade fastmlp")
    if header.get("kind") not in ("network", "estimator"):
        raise Invalid(f"unknown model kind {header.get('kind')!r:.60}")
    record(header, _HEADER_KEYS, "the header")
    if not isinstance(header["arrays"], dict):
        raise Invalid("the header has no array table")


def array_table(table):
    """{name: (dtype, shape, nbytes, sha256)} from the header's array table, every size bounded."""
    if len(table) > MAX_ARRAYS:
        raise Invalid(f"the array table lists {len(table)} arrays")
    specs = {}
    for name, spec in table.items():
        if len(name) > _MAX_NAME or not _NAME_RE.match(name):
            raise Invalid(f"invalid array name {name!r:.100}")
        if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "sha256"}:
            raise Invalid(f"invalid entry for array {name}")
        dtype_str, shape, digest = spec["dtype"], spec["shape"], spec["sha256"]
        if not isinstance(dtype_str, str) or not _DTYPE_RE.match(dtype_str):
            raise Invalid(f"array {name}: dtype {dtype_str!r:.60} is not allowed")
        try:
            dtype = np.dtype(dtype_str)
        except TypeError:
            raise Invalid(f"array {name}: invalid dtype {dtype_str!r}") from None
        if dtype.kind not in _SAFE_KINDS or dtype.itemsize == 0:
            raise Invalid(f"array {name}: dtype {dtype_str!r} is not allowed")
        if not isinstance(shape, list) or len(shape) > _MAX_NDIM:
            raise Invalid(f"array {name}: invalid shape")
        shape = tuple(count(s, f"array {name} shape entry", MAX_SIZE) for s in shape)
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise Invalid(f"array {name}: invalid sha256")
        specs[name] = (dtype, shape, dtype.itemsize * math.prod(shape), digest)
    return specs


def check_digest(name, data, digest):
    """The SHA-256 of an array's bytes ``data`` is the table's."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise Invalid(f"array {name}: SHA-256 checksum mismatch (the file was altered or "
                      f"corrupted)")


def check_table(model_plan, specs):
    """The array table ``specs`` holds exactly the arrays the model description needs."""
    for name, (dtype, shape) in model_plan["arrays"].items():
        if name not in specs:
            raise ValueError(f"array {name} is missing from the array table")
        got = specs[name]
        if (dtype is not None and got[0] != dtype) or (shape is not None and got[1] != shape):
            raise ValueError(f"array {name} is declared {got[0].str}{got[1]}, the model "
                             f"needs {'' if dtype is None else dtype.str}"
                             f"{'' if shape is None else shape}")
    extra = sorted(set(specs) - set(model_plan["arrays"]))
    if extra:
        raise ValueError(f"arrays {extra[:5]} are not part of the model")


def plan(header):
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


def build(header, arrays, model_plan):
    """``(model, optimizer or None)`` from a checked header and its arrays."""
    if header["kind"] == "network":
        model = network_from_record(header["model"], arrays, "network", extended=True)
        rec = header["optimizer"]
        optimizer = (None if rec is None else
                     optimizer_from_record(rec, arrays, "optimizer", params=model_plan["params"]))
        return model, optimizer
    rec = header["model"]
    return _estimator_class(rec["class"]).from_record(rec, arrays), None
