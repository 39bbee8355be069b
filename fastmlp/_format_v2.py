"""Format version 2: a safetensors file whose metadata holds fastmlp's header.

The tensors are the model's arrays, named as in the header's array table
(``network/W1``, ``optimizer/m/W1``, ``classes``, ...); a text array (``<U{n}``) is
stored as a ``U32`` tensor of its code points with one more axis of length ``n``.
``__metadata__`` has one entry, ``"fastmlp"``: the header of ``fastmlp._model_file`` as
canonical JSON (sorted keys, no NaN) plus ``"sha256"``, the SHA-256 of the canonical
JSON of the rest. One entry, because safetensors writes metadata entries in no fixed
order and a saved file should be the same bytes every time.

safetensors itself bounds the header (100 MB), checks every dtype, shape and offset
(contiguous, in range, covering the file exactly) and refuses malformed JSON; here the
header length is bounded again before safetensors reads it (16 MiB and the file's size),
and the metadata's checksum and each array's checksum are verified (safetensors has none).
"""
import hashlib
import json
import os
import struct

import numpy as np

from ._model_file import FORMAT_VERSION, Invalid, array_table, check_digest, check_header, check_table, plan

__all__ = ["read", "read_tensors", "write"]

_KEY = "fastmlp"
MAX_HEADER_BYTES = 16 << 20
_CODES = {("f", 2): "F16", ("f", 4): "F32", ("f", 8): "F64", ("i", 1): "I8", ("i", 2): "I16",
          ("i", 4): "I32", ("i", 8): "I64", ("u", 1): "U8", ("u", 2): "U16", ("u", 4): "U32",
          ("u", 8): "U64", ("b", 1): "BOOL", ("U", 4): "U32"}


def _canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=True)


def _tensor_layout(dtype, shape):
    """(safetensors dtype code, tensor shape) an array of ``dtype`` and ``shape`` is stored as."""
    code = _CODES.get((dtype.kind, 4 if dtype.kind == "U" else dtype.itemsize))
    if code is None:
        raise TypeError(f"dtype {dtype.str} cannot be stored in a safetensors file")
    return code, (tuple(shape) + (dtype.itemsize // 4,) if dtype.kind == "U" else tuple(shape))


def write(fh, header, arrays):
    """Write ``header`` (its array table filled) and ``arrays`` to the binary file ``fh``."""
    from safetensors.numpy import save as save_tensors
    tensors = {}
    for name, a in arrays.items():
        _tensor_layout(a.dtype, a.shape)       # a TypeError for what safetensors lacks
        tensors[name] = (a.view("<u4").reshape(a.shape + (a.dtype.itemsize // 4,))
                         if a.dtype.kind == "U" else a)
    text = dict(header, sha256=hashlib.sha256(_canonical(header).encode()).hexdigest())
    fh.write(save_tensors(tensors, metadata={_KEY: _canonical(text)}))


def _strict_json(text):
    """JSON with no NaN/Infinity literals and no duplicate keys; else Invalid."""
    def constant(name):
        raise Invalid(f"the header holds {name}, which fastmlp's strict JSON never has")

    def unique(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise Invalid(f"the header repeats a key in {keys[:10]!r:.200}")
        return dict(pairs)
    try:
        return json.loads(text, parse_constant=constant, object_pairs_hook=unique)
    except Invalid:
        raise
    except RecursionError:
        raise Invalid("the header is nested too deeply") from None
    except ValueError as exc:            # JSONDecodeError, and integers beyond 4300 digits
        raise Invalid(f"the header is not valid JSON ({exc})") from None


class _Opened:
    """A safetensors file opened through the already-open regular file ``f`` (no second
    lookup of the path, so no window for a swap), its header length bounded first; a
    context manager that closes it."""

    def __init__(self, f, path, size):
        f.seek(0)
        head = f.read(8)
        if len(head) < 8:
            raise Invalid(f"not a fastmlp model file ({size} bytes: too short)")
        (n,) = struct.unpack("<Q", head)
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise Invalid(f"not a fastmlp model file: the safetensors header claims {n} bytes "
                          f"(the file has {size}, a header at most {MAX_HEADER_BYTES})")
        from safetensors import SafetensorError, safe_open
        self.error = SafetensorError
        by_fd = next((f"{d}/{f.fileno()}" for d in ("/proc/self/fd", "/dev/fd")
                      if os.path.isdir(d)), path)
        try:
            self.st = safe_open(by_fd, framework="numpy", backend="pread")
        except SafetensorError as exc:
            raise Invalid(f"not a fastmlp model file (not a valid safetensors file: {exc})") \
                from None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.st.__exit__(None, None, None)

    def layout(self):
        """{name: (dtype code, shape)} of every tensor, nothing read."""
        out = {}
        for name in self.st.keys():
            s = self.st.get_slice(name)
            out[name] = (s.get_dtype(), tuple(s.get_shape()))
        return out

    def tensor(self, name):
        try:
            return self.st.get_tensor(name)
        except self.error as exc:
            raise Invalid(f"tensor {name!r:.100}: {exc} (truncated or changed while read?)") \
                from None


def read(f, path, size):
    """(header, {name: ndarray}, plan) from an open version 2 file of ``size`` bytes."""
    with _Opened(f, path, size) as opened:
        return _read(opened)


def _read(opened):
    metadata = opened.st.metadata() or {}
    if set(metadata) != {_KEY}:
        raise Invalid(f"not a fastmlp model file: a safetensors file whose metadata "
                      f"{'has no' if _KEY not in metadata else 'has more than the'} "
                      f"{_KEY!r} entry (PyTorch weights load with "
                      f"fastmlp.from_torch_state_dict)")
    header = _strict_json(metadata[_KEY])
    if not isinstance(header, dict) or not isinstance(header.get("sha256"), str):
        raise Invalid("not a fastmlp model file (its header has no sha256)")
    digest = header.pop("sha256")
    try:
        canonical = _canonical(header)
    except ValueError as exc:
        raise Invalid(f"the header is not valid JSON ({exc})") from None
    if hashlib.sha256(canonical.encode()).hexdigest() != digest:
        raise Invalid("the header's SHA-256 checksum does not match (the file was altered or "
                      "corrupted)")
    check_header(header)
    if header["format_version"] != FORMAT_VERSION:
        raise Invalid(f"a safetensors file holds format version {FORMAT_VERSION}, not "
                      f"{header['format_version']}")
    specs = array_table(header["arrays"])
    layout = opened.layout()
    if set(layout) != set(specs):
        raise Invalid(f"the tensors {sorted(layout)[:5]!r:.200} are not the array table's "
                      f"{sorted(specs)[:5]!r:.200}")
    for name, (dtype, shape, _, _) in specs.items():
        if dtype.str != dtype.newbyteorder("<").str:
            raise Invalid(f"array {name}: dtype {dtype.str} is not little-endian")
        try:
            expected = _tensor_layout(dtype, shape)
        except TypeError as exc:
            raise Invalid(f"array {name}: {exc}") from None
        if layout[name] != expected:
            raise Invalid(f"array {name}: the tensor is {layout[name][0]}{list(layout[name][1])}, "
                          f"the header says {dtype.str}{list(shape)}")
    model_plan = plan(header)           # checked against the table before any array is read
    check_table(model_plan, specs)
    arrays = {}
    for name, (dtype, shape, _, digest) in specs.items():
        raw = np.ascontiguousarray(opened.tensor(name))
        check_digest(name, raw, digest)
        if dtype.kind == "b" and np.any(raw.view(np.uint8) > 1):
            raise Invalid(f"array {name}: a bool tensor holds bytes other than 0 and 1")
        arrays[name] = np.array(raw.view(dtype).reshape(shape), copy=True)
    return header, arrays, model_plan


def read_tensors(f, path, size):
    """``{name: ndarray}`` (writable copies) of any safetensors file opened as ``f``."""
    with _Opened(f, path, size) as opened:
        return {name: np.array(opened.tensor(name), copy=True) for name in opened.layout()}
