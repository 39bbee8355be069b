"""Read and write fastmlp model files for the tests, independently of ``fastmlp.io``.

Version 2 is a safetensors file whose ``__metadata__["fastmlp"]`` is the header JSON with a
``sha256`` of the canonical JSON of the rest; version 1 a ZIP of ``header.json`` and
``arrays/<name>.npy``. :func:`rewrite` edits a file's header and arrays and writes it back
in its own version with valid checksums (the header's, for version 2; the array table's
entries are left as ``mutate`` leaves them), so a test reaches the checks behind them.
"""
import hashlib
import io
import json
import pathlib
import zipfile

import numpy as np

V1_DATA = pathlib.Path(__file__).parent / "data" / "io_v1"
V1_NETWORK = V1_DATA / "net_multi_adam_f32.fmlp"     # MultiLayerNet(4, [3], 2) f32 + Adam
V1_ESTIMATOR = V1_DATA / "est_clf_adam_str.fmlp"     # MLPClassifier, Adam, string classes


def version_of(path):
    return 1 if pathlib.Path(path).read_bytes()[:2] == b"PK" else 2


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def spec(arr):
    """The array-table entry of ``arr``."""
    arr = np.ascontiguousarray(arr)
    return {"dtype": arr.dtype.str, "shape": list(arr.shape),
            "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}


def read(path):
    """``(header, {name: ndarray}, version)``; the v2 header without its ``sha256``."""
    if version_of(path) == 1:
        with zipfile.ZipFile(path) as zf:
            header = json.loads(zf.read("header.json"))
            arrays = {n: np.load(io.BytesIO(zf.read(f"arrays/{n}.npy")), allow_pickle=True)
                      for n in header["arrays"]}
        return header, arrays, 1
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:
        header = json.loads(f.metadata()["fastmlp"])
        tensors = {n: f.get_tensor(n) for n in f.keys()}
    header.pop("sha256")
    arrays = {}
    for name, t in tensors.items():
        dtype = np.dtype(header["arrays"].get(name, {}).get("dtype", t.dtype))
        arrays[name] = (np.ascontiguousarray(t).view(dtype).reshape(t.shape[:-1])
                        if dtype.kind == "U" else t)
    return header, arrays, 2


def write(path, header, arrays, version, header_sha256=None):
    """Write a file of ``version``; v2's header checksum computed unless given."""
    if version == 1:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("header.json", json.dumps(header))
            for n, a in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, a, version=(1, 0), allow_pickle=True)
                zf.writestr(f"arrays/{n}.npy", buf.getvalue())
        return path
    from safetensors.numpy import save
    digest = header_sha256 or hashlib.sha256(canonical(header).encode()).hexdigest()
    tensors = {n: (a.view("<u4").reshape(a.shape + (a.dtype.itemsize // 4,))
                   if a.dtype.kind == "U" else a) for n, a in arrays.items()}
    text = json.dumps(dict(header, sha256=digest), allow_nan=False)
    pathlib.Path(path).write_bytes(save(tensors, metadata={"fastmlp": text}))
    return path


def rewrite(src, dst, mutate=None, arrays=None, drop=()):
    """``src`` with its header changed by ``mutate(header)``, arrays replaced or added and
    the arrays in ``drop`` removed, written to ``dst`` in ``src``'s version."""
    header, contents, version = read(src)
    if mutate is not None:
        mutate(header)
    for n in drop:
        contents.pop(n, None)
    contents.update(arrays or {})
    return write(dst, header, contents, version)
