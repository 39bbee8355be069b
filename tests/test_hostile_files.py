"""Issue #10, "no file can hurt you": hostile inputs to fastmlp.load, fastmlp.save and load_mnist.

(a) every truncation point and (b) a seeded sample of single-byte flips of a saved
network file and a saved fitted MLPClassifier file, in format 2 (safetensors) and in
format 1 (ZIP, tests/data/io_v1): each loads bit for bit or raises a ValueError naming
the file, never anything else; (c) crafted files — format 1: a deflate bomb member,
oversized declared shapes, path-like, duplicate and too many members, a huge header,
garbage, special files; format 2: a huge or lying header length, truncated data,
overlapping and out-of-range offsets, wrong and unknown dtypes, huge shapes, NaN and
duplicate keys in the metadata JSON, deep nesting — each fails with a clear ValueError
inside a memory and time bound enforced in a subprocess (RLIMIT_AS and ru_maxrss, a
timeout); (d) header values the constructors reject, and (e) a deleted optimizer
record, are ValueErrors at load (both formats); (f) save never writes through a planted symlink
and leaves no temporary behind; (g) load_mnist gzip bombs are bounded and named.
"""
import gzip
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import warnings
import zipfile
import zlib

import numpy as np
import pytest

import fastmlp
from fastmlp import optimizers
from fastmlp.datasets._mnist import _write_idx
from fastmlp.io import load, save

from _model_files import V1_ESTIMATOR, V1_NETWORK, rewrite

LINUX = sys.platform.startswith("linux")
MEMORY_LIMIT = 3 << 29      # RLIMIT_AS in the child: 1.5 GiB over its address space after import
PEAK_RSS_BOUND = 256 << 20  # growth of the child's peak resident set over all its cases
CASE_SECONDS = 20           # per crafted case
CHILD_TIMEOUT = 120         # per child (a hang shows as a failure naming the case)


# ----------------------------------------------------------------------------- saved files

def _network_file(path):
    net = fastmlp.MultiLayerNet(4, [3], 2, dtype=np.float32, seed=0)
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(8, 4)), rng.integers(0, 2, 8)
    opt = optimizers.Adam(0.01)
    for _ in range(3):
        opt.update(net.params, net.gradient(x, t))
    save(net, path, optimizer=opt)
    return path


def _estimator_file(path):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), np.arange(30) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = fastmlp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=3, random_state=0).fit(x, y)
    save(est, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("saved")
    return {"network": _network_file(d / "net.fmlp"), "estimator": _estimator_file(d / "est.fmlp"),
            "network_v1": V1_NETWORK, "estimator_v1": V1_ESTIMATOR}


KINDS = ["network", "estimator", "network_v1", "estimator_v1"]


def _state(obj):
    """Every array and counter a loaded model carries, as bytes (for bitwise comparison)."""
    if isinstance(obj, tuple):
        return tuple(_state(o) for o in obj)
    if obj is None:
        return None
    out = {}
    for name in ("params", "m", "v", "h"):
        value = getattr(obj, name, None)
        if isinstance(value, dict):
            out[name] = {k: (a.dtype.str, a.shape, a.tobytes()) for k, a in value.items()}
    for name in ("iter", "lr", "beta1", "beta2", "n_iter_", "t_", "loss_curve_"):
        if hasattr(obj, name):
            out[name] = repr(getattr(obj, name))
    if hasattr(obj, "_net"):
        out["net"] = _state(obj._net)
        out["optimizer"] = _state(obj._optimizer)
        out["classes"] = obj.classes_.tobytes()
    return out


class _Scratch:
    """One file rewritten in place (reopening or truncating a file to 0 costs ~5 ms on ext4)."""

    def __init__(self, path):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def write(self, data):
        os.pwrite(self._fd, data, 0)
        if os.fstat(self._fd).st_size > len(data):
            os.ftruncate(self._fd, len(data))   # not to 0 first: ext4 then flushes every time

    def close(self):
        os.close(self._fd)


def _loads_identically_or_value_error(path, expected, label):
    """Load ``path``: the same state as ``expected`` or a ValueError naming the file."""
    try:
        got = load(path, with_optimizer=True)
    except ValueError as exc:
        assert str(path) in str(exc), f"{label}: the error does not name the file: {exc}"
        return False
    except Exception as exc:  # anything else is the bug under test
        pytest.fail(f"{label}: {type(exc).__name__}: {exc}")
    assert _state(got) == expected, f"{label}: loaded a different model silently"
    return True


# ----------------------------------------------------------------------------- (a) truncation

@pytest.mark.parametrize("kind", KINDS)
def test_every_truncation_point(files, kind, tmp_path):
    data = files[kind].read_bytes()
    expected = _state(load(files[kind], with_optimizer=True))
    path = tmp_path / "cut.fmlp"
    scratch = _Scratch(path)
    loaded = 0
    for cut in range(len(data) + 1):
        scratch.write(data[:cut])
        loaded += _loads_identically_or_value_error(path, expected, f"cut at {cut}/{len(data)}")
    scratch.close()
    assert loaded == 1   # only the whole file


# ----------------------------------------------------------------------------- (b) flips

@pytest.mark.parametrize("kind", KINDS)
def test_seeded_single_byte_flips(files, kind, tmp_path):
    data = files[kind].read_bytes()
    expected = _state(load(files[kind], with_optimizer=True))
    rng = np.random.default_rng(10)
    path = tmp_path / "flip.fmlp"
    scratch = _Scratch(path)
    caught = 0
    n = 300
    for pos, xor in zip(rng.integers(0, len(data), n), rng.integers(1, 256, n)):
        damaged = bytearray(data)
        damaged[pos] ^= int(xor)
        scratch.write(bytes(damaged))
        caught += not _loads_identically_or_value_error(path, expected, f"byte {pos} ^ {xor}")
    scratch.close()
    assert caught > n // 2   # only metadata (timestamps, JSON whitespace) can change harmlessly


# ----------------------------------------------------------------------------- crafting helpers

def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _npy(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def _spec(arr):
    return {"dtype": arr.dtype.str, "shape": list(arr.shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()}


def _write_zip(path, members, compress=()):
    """A ZIP of ``members`` (name -> bytes or ZipInfo-ready entries), those in ``compress`` deflated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # duplicate names are deliberate
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members:
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
                zf.writestr(info, data)
    return path


def _rewrite(src, dst, mutate=None, members=None, drop=()):
    """``src``'s archive with its header changed by ``mutate`` and members replaced/added."""
    contents = _members(src)
    header = json.loads(contents.pop("header.json"))
    if mutate is not None:
        mutate(header)
    for n in drop:
        contents.pop(n, None)
    contents.update(members or {})
    return _write_zip(dst, [("header.json", json.dumps(header).encode())] + list(contents.items()))


def _zeros_deflate(n_chunks, prefix=b"", chunk=1 << 24):
    """A raw deflate stream of ``prefix`` + n_chunks * chunk zero bytes, built in ~0.3 s.

    Each block is fully flushed (no back references across it), so it can be repeated.
    """
    z = b"\0" * chunk
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(prefix + z) + c.flush(zlib.Z_FULL_FLUSH)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(z) + c.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return first + block * (n_chunks - 1) + end, len(prefix) + n_chunks * chunk


def _zip_with_raw_member(path, members, raw_name, raw_deflate, raw_size, crc):
    """A ZIP whose member ``raw_name`` is the given deflate stream (not recompressed)."""
    out = io.BytesIO()
    central = []
    for name, data, method, size, c in members + [(raw_name, raw_deflate, 8, raw_size, crc)]:
        if method == 0:
            c, size = zlib.crc32(data), len(data)
        offset = out.tell()
        fname = name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, c, len(data),
                              size, len(fname), 0) + fname + data)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, c,
                                   len(data), size, len(fname), 0, 0, 0, 0, 0o644 << 16, offset)
                       + fname)
    cd_offset = out.tell()
    cd = b"".join(central)
    out.write(cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central),
                               len(cd), cd_offset, 0))
    path.write_bytes(out.getvalue())
    return path


# ----------------------------------------------------------------------------- (c) the child

CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    import warnings
    warnings.simplefilter("ignore")
    import fastmlp
    from fastmlp.datasets import load_mnist

    def status(field):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    limit = status("VmSize") + int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for kind, path in json.loads(sys.argv[1]):
        print(json.dumps({"start": path}), flush=True)
        t = time.perf_counter()
        try:
            (fastmlp.load if kind == "load" else load_mnist)(path)
            exc, msg = None, ""
        except BaseException as e:
            exc, msg = type(e).__name__, str(e)[:1000]
        print(json.dumps({"path": path, "exc": exc, "msg": msg,
                          "seconds": time.perf_counter() - t,
                          "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                                  - base_rss}), flush=True)
""")


def _run_bounded(cases):
    """Run ``[(kind, path, error_regex)]`` in one child under RLIMIT_AS; check each outcome."""
    import re
    arg = json.dumps([(kind, str(path)) for kind, path, _ in cases])
    proc = subprocess.Popen([sys.executable, "-c", CHILD, arg, str(MEMORY_LIMIT)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tempfile.gettempdir())   # the installed fastmlp, not the tree
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        last = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        pytest.fail(f"child timed out; last case started: {last[-1] if last else None}")
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    results = {r["path"]: r for r in lines if "path" in r}
    assert proc.returncode == 0, f"child died ({proc.returncode}); last: {lines[-1:]}\n{err[-2000:]}"
    report, problems = [], []
    for kind, path, regex in cases:
        r = results[str(path)]
        report.append((path.name, r["exc"], round(r["seconds"], 3), r["peak"] >> 20))
        if r["exc"] != "ValueError":
            problems.append(f"{path.name}: {r['exc']}: {r['msg']}")
        elif str(path) not in r["msg"]:
            problems.append(f"{path.name}: the error does not name the file: {r['msg']}")
        elif not re.search(regex, r["msg"]):
            problems.append(f"{path.name}: {r['msg']!r} does not match {regex!r}")
        elif "MemoryError" in r["msg"]:
            problems.append(f"{path.name}: bounded by the rlimit only: {r['msg']}")
        if r["seconds"] >= CASE_SECONDS:
            problems.append(f"{path.name} took {r['seconds']:.1f} s")
    peak = max(r["peak"] for r in results.values())
    if peak >= PEAK_RSS_BOUND:
        problems.append(f"peak RSS grew by {peak >> 20} MiB")
    print("\n".join(map(str, report)), f"\npeak RSS growth {peak >> 20} MiB")
    assert not problems, "\n".join(problems)
    return report


needs_linux = pytest.mark.skipif(not LINUX, reason="RLIMIT_AS, /proc and special files: Linux")


@needs_linux
def test_crafted_v1_files_fail_within_bounds(files, tmp_path):
    net_file = files["network_v1"]
    contents = _members(net_file)
    cases = []

    def case(name, regex, path=None):
        cases.append(("load", path if path is not None else tmp_path / name, regex))
        return tmp_path / name

    # A deflate bomb: ~1 MB member expanding to 1 GiB, declared as a 1 GiB array.
    npy_head = _npy(np.zeros((1 << 17, 1024), np.float64))[:128]
    bomb, bomb_size = _zeros_deflate(64, prefix=npy_head)
    h = json.loads(contents["header.json"])
    h["arrays"]["network/W1"] = {"dtype": "<f8", "shape": [1 << 17, 1024], "sha256": "0" * 64}
    h["model"]["config"]["input_size"] = 1 << 17
    h["model"]["config"]["dtype"] = "float64"
    others = [(n, d, 0, 0, 0) for n, d in contents.items()
              if n not in ("header.json", "arrays/network/W1.npy")]
    _zip_with_raw_member(case("deflate_bomb.fmlp", "compressed"),
                         [("header.json", json.dumps(h).encode(), 0, 0, 0)] + others,
                         "arrays/network/W1.npy", bomb, bomb_size, 0)
    # The same data deflated honestly (small): refused for being compressed, not for its size.
    _write_zip(case("deflated.fmlp", "compressed"), list(contents.items()),
               compress={"arrays/network/W1.npy"})

    # The header claims a huge network; the arrays are the small ones.
    def huge_net(hh):
        hh["model"]["config"].update(input_size=10**6, hidden_size_list=[10**6])
    _rewrite(net_file, case("huge_network.fmlp", r"network/W1.*\(1000000, 1000000\)"), huge_net)

    # A huge network and no arrays at all.
    def huge_net_no_arrays(hh):
        huge_net(hh)
        hh["arrays"] = {}
        hh["optimizer"] = None
    _rewrite(net_file, case("huge_network_no_arrays.fmlp", "network/W1.*missing"),
             huge_net_no_arrays, drop=[n for n in contents if n.startswith("arrays/")])

    # The table and the member's own .npy header claim a huge array; the data is tiny.
    def huge_array(hh):
        hh["arrays"]["network/W1"] = {"dtype": "<f8", "shape": [10**7, 10**6], "sha256": "0" * 64}
    header_big = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header_big, {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**6)})
    _rewrite(net_file, case("huge_array_tiny_data.fmlp", "W1"), huge_array,
             members={"arrays/network/W1.npy": header_big.getvalue() + b"\0" * 16})
    _rewrite(net_file, case("huge_array_honest_npy.fmlp", "W1"), huge_array)

    # Path-like member names, as extra members and as array names.
    for i, bad in enumerate(["../x", "/abs", "arrays/../../x", "arrays/network/../../../x.npy"]):
        _rewrite(net_file, case(f"member_path_{i}.fmlp", "unexpected members"),
                 members={bad: b"x"})

        def bad_name(hh, bad=bad):
            hh["arrays"][bad] = hh["arrays"]["network/b1"]
        _rewrite(net_file, case(f"array_path_{i}.fmlp", "invalid array name"), bad_name,
                 members={f"arrays/{bad}.npy": contents["arrays/network/b1.npy"]})

    # Duplicate members (a second, different W1 after the real one).
    _write_zip(case("duplicate.fmlp", "duplicate"), list(contents.items())
               + [("arrays/network/W1.npy", _npy(np.ones((4, 3), np.float32)))])
    # Too many members; and an end record that claims 65535 of them.
    _write_zip(case("too_many.fmlp", "too many members"), list(contents.items())
               + [(f"pad/{i}", b"") for i in range(10_001)])
    raw = bytearray(net_file.read_bytes())
    raw[-14:-10] = struct.pack("<2H", 0xFFFF, 0xFFFF)
    case("claims_many.fmlp", "too many members").write_bytes(bytes(raw))
    raw = bytearray(net_file.read_bytes())
    raw[-10:-6] = struct.pack("<L", 0xFFFFFFF0)
    case("huge_directory.fmlp", "central directory").write_bytes(bytes(raw))

    # A huge header of the JSON that costs most memory per byte (empty lists).
    _write_zip(case("huge_header.fmlp", "implausibly large"),
               [("header.json", b"[" + b"[]," * (6 << 20) + b"[]]")])
    # Deeply nested JSON within the size limit.
    _write_zip(case("nested_header.fmlp", "header.json|nested"),
               [("header.json", b"[" * 200_000 + b"]" * 200_000)])
    # A member that claims to be larger than the file.
    raw = bytearray(net_file.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 20:cd + 28] = struct.pack("<2L", 0x7FFFFFFF, 0x7FFFFFFF)
    case("member_larger_than_file.fmlp", "more than the file").write_bytes(bytes(raw))

    # Not a ZIP at all.
    case("garbage.fmlp", "not a fastmlp model file").write_bytes(
        np.random.default_rng(3).bytes(1 << 20))
    case("eocd_only.fmlp", "not a fastmlp model file|central directory").write_bytes(
        struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, 1 << 30, 0, 0))

    # Special files.
    fifo = tmp_path / "fifo.fmlp"
    os.mkfifo(fifo)
    case("fifo", "FIFO", fifo)
    case("directory", "directory", tmp_path)
    for dev in ("/dev/zero", "/dev/urandom"):
        if os.path.exists(dev):
            cases.append(("load", type(tmp_path)(dev), "device"))

    report = _run_bounded(cases)
    assert len(report) >= 25


def _st_parts(path):
    """(header dict, data bytes) of a safetensors file."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _st_bytes(header, data, length=None):
    """A safetensors file: ``header`` (a dict, or raw JSON bytes) and ``data``; the length
    field says ``length`` when given."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _with_metadata_text(header, text):
    h = json.loads(json.dumps(header))
    h["__metadata__"] = {"fastmlp": text}
    return h


@needs_linux
def test_crafted_v2_files_fail_within_bounds(files, tmp_path):
    """Format 2 files whose safetensors frame or fastmlp metadata lies."""
    header, data = _st_parts(files["network"])
    cases = []

    def case(name, regex, content):
        path = tmp_path / name
        path.write_bytes(content)
        cases.append(("load", path, regex))

    def tensor_edit(name, **changes):
        h = json.loads(json.dumps(header))
        h[name].update(changes)
        return h

    # The header length field: huge, beyond the file, beyond the 16 MiB bound.
    for i, n in enumerate([2**64 - 1, 2**63, 2**40, len(data) + 10**6]):
        case(f"length_{i}.safetensors", "header claims", _st_bytes(header, data, n))
    big = json.dumps(header).encode() + b" " * (17 << 20)
    case("header_17MiB.safetensors", "header claims", _st_bytes(big, data))
    # A header of the JSON that costs most memory per byte, just over the bound.
    case("huge_header.safetensors", "header claims",
         _st_bytes(b"[" + b"[]," * (6 << 20) + b"[]]", b""))
    # Truncated data, and data beyond what the header covers.
    whole = files["network"].read_bytes()
    case("truncated.safetensors", "not a valid safetensors", whole[:-5])
    case("trailing.safetensors", "not a valid safetensors", whole + b"\0" * 8)
    # Offsets: overlapping, out of range, reversed.
    w1 = header["network/W1"]["data_offsets"]
    case("overlap.safetensors", "not a valid safetensors",
         _st_bytes(tensor_edit("network/b1", data_offsets=w1), data))
    case("out_of_range.safetensors", "not a valid safetensors",
         _st_bytes(tensor_edit("network/W1", data_offsets=[w1[0], 10**12]), data))
    case("reversed.safetensors", "not a valid safetensors",
         _st_bytes(tensor_edit("network/W1", data_offsets=w1[::-1]), data))
    # Dtypes: one the sizes rule out, one of the same size (I32 for F32), unknown ones.
    case("f64_for_f32.safetensors", "not a valid safetensors",
         _st_bytes(tensor_edit("network/W1", dtype="F64"), data))
    case("i32_for_f32.safetensors", "network/W1: the tensor is I32",
         _st_bytes(tensor_edit("network/W1", dtype="I32"), data))
    case("bf16.safetensors", "not a valid safetensors|network/W1",
         _st_bytes(tensor_edit("network/W1", dtype="BF16", shape=[4, 6]), data))
    case("object_dtype.safetensors", "not a valid safetensors",
         _st_bytes(tensor_edit("network/W1", dtype="O"), data))
    # Shapes: huge ones (an overflow, and a product the data cannot hold).
    case("huge_shape.safetensors", "not a valid safetensors",
         _st_bytes(tensor_edit("network/W1", shape=[2**40, 2**40]), data))
    case("big_shape.safetensors", "not a valid safetensors",
         _st_bytes(tensor_edit("network/W1", shape=[10**7, 10**6]), data))
    # The fastmlp metadata: missing, extra entry, not JSON, NaN, duplicate keys, nested.
    text = header["__metadata__"]["fastmlp"]
    plain = {k: v for k, v in header.items() if k != "__metadata__"}
    case("no_metadata.safetensors", "not a fastmlp model file", _st_bytes(plain, data))
    extra = json.loads(json.dumps(header))
    extra["__metadata__"]["other"] = "1"
    case("extra_metadata.safetensors", "not a fastmlp model file", _st_bytes(extra, data))
    case("metadata_not_json.safetensors", "not valid JSON",
         _st_bytes(_with_metadata_text(header, text[:-3]), data))
    case("metadata_nan.safetensors", "NaN",
         _st_bytes(_with_metadata_text(header, text.replace('"lr":0.01', '"lr":NaN')), data))
    case("metadata_infinity.safetensors", "Infinity",
         _st_bytes(_with_metadata_text(header, text.replace('"lr":0.01', '"lr":-Infinity')),
                   data))
    case("metadata_duplicate_key.safetensors", "repeats a key",
         _st_bytes(_with_metadata_text(header, text.replace('"lr":0.01', '"lr":0.01,"lr":0.5')),
                   data))
    case("metadata_nested.safetensors", "nested too deeply",
         _st_bytes(_with_metadata_text(header, "[" * 200_000 + "]" * 200_000), data))
    case("metadata_big_int.safetensors", "not valid JSON",
         _st_bytes(_with_metadata_text(header, text.replace('"lr":0.01', '"lr":1' + "0" * 5000)),
                   data))
    case("metadata_altered.safetensors", "checksum",
         _st_bytes(_with_metadata_text(header, text.replace('"lr":0.01', '"lr":0.5')), data))
    assert '"lr":0.01' in text
    report = _run_bounded(cases)
    assert len(report) == len(cases)


# ----------------------------------------------------------------------------- (d) header values

VERSIONS = pytest.mark.parametrize("suffix", ["", "_v1"], ids=["v2", "v1"])


def _network_with(tmp_path, files, mutate, suffix="", arrays=None, drop=()):
    return rewrite(files["network" + suffix], tmp_path / "edited.fmlp", mutate, arrays, drop)


def _text_state(h):
    h["arrays"]["optimizer/m/W1"] = _spec(np.array(["abcde"] * 12).reshape(4, 3))


HEADER_VALUES = {
    "negative_lr": (lambda h: h["optimizer"]["hyper"].update(lr=-0.1), "lr"),
    "nan_lr": (lambda h: h["optimizer"]["hyper"].update(lr="NaN"), "lr"),
    "beta1_above_1": (lambda h: h["optimizer"]["hyper"].update(beta1=1.5), "beta1"),
    "string_lr": (lambda h: h["optimizer"]["hyper"].update(lr="fast"), "lr"),
    "missing_hyper": (lambda h: h["optimizer"]["hyper"].pop("beta2"), "beta2"),
    "unknown_hyper": (lambda h: h["optimizer"]["hyper"].update(gamma=0.5), "gamma"),
    "step_count_10_400": (lambda h: h["optimizer"].update(iter=10**400), "iter"),
    "negative_step_count": (lambda h: h["optimizer"].update(iter=-1), "iter"),
    "float_step_count": (lambda h: h["optimizer"].update(iter=3.5), "iter"),
    "nan_weight_decay": (lambda h: h["model"]["config"].update(weight_decay_lambda="NaN"),
                         "weight_decay_lambda"),
    "negative_weight_decay": (lambda h: h["model"]["config"].update(weight_decay_lambda=-1),
                              "weight_decay_lambda"),
    "zero_width": (lambda h: h["model"]["config"].update(hidden_size_list=[0]), "hidden_size"),
    "bool_width": (lambda h: h["model"]["config"].update(input_size=True), "input_size"),
    "huge_width": (lambda h: h["model"]["config"].update(input_size=10**400), "input_size"),
    "too_many_layers": (lambda h: h["model"]["config"].update(hidden_size_list=[3] * 10**6),
                        "hidden_size_list"),
    "unknown_config_key": (lambda h: h["model"]["config"].update(evil=1), "evil"),
    "params_list": (lambda h: h["model"].update(params=["W1", "b1"]), "parameter list"),
    "partial_state": (lambda h: h["optimizer"]["state"].pop("v"), "state"),
    "state_for_other_params": (lambda h: h["optimizer"]["state"].update(m=["W1"]), "state m"),
    "float64_table_entry": (lambda h: h["arrays"]["network/b1"].update(dtype="<f8"), "b1"),
    "record_dtype": (lambda h: h["arrays"]["network/b1"].update(dtype="[('a', '<f4')]"),
                     "not allowed"),
    "shape_entry_10_400": (lambda h: h["arrays"]["network/b1"].update(shape=[10**400]), "b1"),
}


@VERSIONS
@pytest.mark.parametrize("case", sorted(HEADER_VALUES))
def test_header_values_constructors_reject(files, tmp_path, case, suffix):
    mutate, field = HEADER_VALUES[case]
    path = _network_with(tmp_path, files, mutate, suffix)
    with pytest.raises(ValueError, match=field) as err:
        load(path, with_optimizer=True)
    assert str(path) in str(err.value)


@VERSIONS
def test_text_dtype_optimizer_state(files, tmp_path, suffix):
    state = np.array(["abcde"] * 12).reshape(4, 3)
    path = _network_with(tmp_path, files, _text_state, suffix, arrays={"optimizer/m/W1": state})
    with pytest.raises(ValueError, match="optimizer/m/W1") as err:
        load(path, with_optimizer=True)
    assert str(path) in str(err.value)


def _estimator_with(tmp_path, files, mutate, suffix=""):
    return rewrite(files["estimator" + suffix], tmp_path / "edited.fmlp", mutate)


ESTIMATOR_VALUES = {
    "nan_alpha": (lambda h: h["model"]["params"].update(alpha={"float": "NaN"}), "alpha"),
    "negative_alpha": (lambda h: h["model"]["params"].update(alpha=-1.0), "alpha"),
    "negative_learning_rate": (lambda h: h["model"]["params"].update(learning_rate_init=-0.1),
                               "learning_rate_init"),
    "unknown_solver": (lambda h: h["model"]["params"].update(solver="newton"), "solver"),
    "unknown_param": (lambda h: h["model"]["params"].update(evil=1), "evil"),
    "negative_random_state": (lambda h: h["model"]["params"].update(random_state=-5),
                              "random_state|negative"),
    "t_10_400": (lambda h: h["model"]["state"].update(t_=10**400), "t_"),
    "optimizer_iter_10_400": (lambda h: h["model"]["optimizer"].update(iter=10**400), "iter"),
    "negative_epsilon": (lambda h: h["model"]["optimizer"]["hyper"].update(epsilon=-1e-8),
                         "epsilon"),
    "n_features_mismatch": (lambda h: h["model"]["state"].update(n_features_in_=5),
                            "n_features_in_"),
    "nan_loss_curve": (lambda h: h["model"]["state"].update(loss_curve_=["bad"]), "loss_curve_"),
    "rng_state_overflow": (lambda h: h["model"]["state"]["rng"]["state"].update(state=2**200),
                           "rng"),
    "wrong_out_activation": (lambda h: h["model"]["state"].update(out_activation_="identity"),
                             "out_activation_"),
    "regression_network": (lambda h: h["model"]["network"]["config"].update(loss="mse"), "loss"),
}


@VERSIONS
@pytest.mark.parametrize("case", sorted(ESTIMATOR_VALUES))
def test_estimator_header_values_rejected(files, tmp_path, case, suffix):
    mutate, field = ESTIMATOR_VALUES[case]
    path = _estimator_with(tmp_path, files, mutate, suffix)
    with pytest.raises(ValueError, match=field) as err:
        load(path)
    assert str(path) in str(err.value)


@VERSIONS
def test_huge_header_values_allocate_nothing(files, tmp_path, suffix):
    """Old code built the network the header named before matching it against the arrays."""
    import tracemalloc

    def huge(h):
        h["model"]["config"].update(input_size=20_000, hidden_size_list=[20_000])
    path = _network_with(tmp_path, files, huge, suffix)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="W1"):
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak >> 20} MiB allocated for a file that holds a 4x3 network"


# ----------------------------------------------------------------------------- (e) optimizer

@VERSIONS
def test_deleted_optimizer_record_is_an_error(files, tmp_path, suffix):
    state = []

    def drop(h):
        del h["optimizer"]
        for n in list(h["arrays"]):
            if n.startswith("optimizer/"):
                del h["arrays"][n]
                state.append(n)
    path = _network_with(tmp_path, files, drop, suffix, drop=state)
    with pytest.raises(ValueError, match="optimizer") as err:
        load(path, with_optimizer=True)
    assert str(path) in str(err.value)
    # With the record gone but its arrays kept: an error too, not a silent drop.
    path = _network_with(tmp_path, files, lambda h: h.pop("optimizer"), suffix)
    with pytest.raises(ValueError, match="optimizer"):
        load(path, with_optimizer=True)
    # A record set to null while its arrays remain.
    path = _network_with(tmp_path, files, lambda h: h.update(optimizer=None), suffix)
    with pytest.raises(ValueError, match="optimizer"):
        load(path, with_optimizer=True)


# ----------------------------------------------------------------------------- (f) save

def _net(seed):
    return fastmlp.MultiLayerNet(4, [3], 2, seed=seed)


def _assert_saved(path, net):
    back = load(path)
    for k, p in net.params.items():
        assert back.params[k].tobytes() == p.tobytes()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_save_does_not_follow_a_symlink_at_the_old_predictable_name(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    target = tmp_path / "model.fmlp"
    save(_net(0), target)
    planted = [tmp_path / f".model.fmlp.{os.getpid()}.tmp", tmp_path / ".model.fmlp.tmp"]
    for p in planted:
        os.symlink(victim, p)
    net = _net(1)
    save(net, target)
    assert victim.read_bytes() == b"precious"
    assert all(os.readlink(p) == str(victim) for p in planted)
    _assert_saved(target, net)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["victim.txt", "model.fmlp"] + [p.name for p in planted])


@pytest.mark.skipif(not hasattr(os, "symlink") or not hasattr(tempfile, "_get_candidate_names"),
                    reason="needs symlinks and tempfile's name source")
def test_save_does_not_follow_a_symlink_at_its_random_name(tmp_path, monkeypatch):
    """Plant a symlink at the very name the temporary would get first: O_EXCL skips it."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    planted = tmp_path / ".model.fmlp.guessed.tmp"
    os.symlink(victim, planted)
    names = iter(["guessed", "guessed", "fresh1", "fresh2", "fresh3"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    net = _net(2)
    save(net, tmp_path / "model.fmlp")
    assert victim.read_bytes() == b"precious"
    assert os.readlink(planted) == str(victim)
    _assert_saved(tmp_path / "model.fmlp", net)
    assert sorted(os.listdir(tmp_path)) == sorted(["victim.txt", "model.fmlp", planted.name])


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError, MemoryError])
def test_save_leaves_no_temporary_after_an_error(tmp_path, monkeypatch, error):
    target = tmp_path / "model.fmlp"
    old = _net(0)
    save(old, target)
    before = target.read_bytes()
    from fastmlp import _format_v2
    real = _format_v2.write

    def failing(fh, header, arrays):
        real(fh, header, arrays)
        fh.truncate(fh.tell() // 2)           # half a file written, then the failure
        raise error("interrupted mid-write")

    monkeypatch.setattr(_format_v2, "write", failing)
    with pytest.raises(error):
        save(_net(1), target)
    assert os.listdir(tmp_path) == ["model.fmlp"]
    assert target.read_bytes() == before


def test_save_leaves_no_temporary_when_the_replace_fails(tmp_path, monkeypatch):
    def refuse(*args):
        raise PermissionError("replace refused")
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        save(_net(0), tmp_path / "model.fmlp")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not LINUX, reason="umask semantics")
def test_saved_file_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        save(_net(0), tmp_path / "model.fmlp")
    finally:
        os.umask(old)
    assert (tmp_path / "model.fmlp").stat().st_mode & 0o777 == 0o640


# ----------------------------------------------------------------------------- (g) load_mnist

MNIST_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _mnist_dir(d, n=6):
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in MNIST_NAMES:
        shape = (n, 28, 28) if "images" in name else (n,)
        _write_idx(d / name, rng.integers(0, 10, shape, dtype=np.uint8))
    return d


def _gzip_from_raw(raw, size, crc):
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + raw
            + struct.pack("<2L", crc, size & 0xFFFFFFFF))


def _crc_zeros(prefix, n_chunks, chunk=1 << 24):
    crc = zlib.crc32(prefix)
    z = b"\0" * chunk
    for _ in range(n_chunks):
        crc = zlib.crc32(z, crc)
    return crc


@needs_linux
def test_mnist_gzip_bombs_are_bounded(tmp_path):
    cases = []
    # 1. The labels header claims 6 labels; the stream goes on for 512 MiB of zeros.
    d = _mnist_dir(tmp_path / "small_dims")
    head = (0x0801).to_bytes(4, "big") + (6).to_bytes(4, "big")
    raw, size = _zeros_deflate(32, prefix=head)
    (d / MNIST_NAMES[1]).unlink()
    bomb = d / (MNIST_NAMES[1] + ".gz")
    bomb.write_bytes(_gzip_from_raw(raw, size, _crc_zeros(head, 32)))
    cases.append(("mnist", d, "train-labels-idx1-ubyte.gz: trailing"))
    # 2. The images header claims 2**32-1 images; the stream is 512 MiB of zeros.
    d = _mnist_dir(tmp_path / "huge_dims")
    head = (0x0803).to_bytes(4, "big") + struct.pack(">3L", 2**32 - 1, 28, 28)
    raw, size = _zeros_deflate(32, prefix=head)
    (d / MNIST_NAMES[0]).unlink()
    (d / (MNIST_NAMES[0] + ".gz")).write_bytes(_gzip_from_raw(raw, size, 0))
    cases.append(("mnist", d, "train-images-idx3-ubyte.gz: truncated"))
    # 3. Huge dims, a tiny gzip file.
    d = _mnist_dir(tmp_path / "huge_dims_tiny")
    (d / MNIST_NAMES[3]).unlink()
    (d / (MNIST_NAMES[3] + ".gz")).write_bytes(gzip.compress(
        (0x0801).to_bytes(4, "big") + (2**32 - 1).to_bytes(4, "big"), mtime=0))
    cases.append(("mnist", d, "t10k-labels-idx1-ubyte.gz: truncated"))
    # 4. Huge dims in a plain file: refused from the file size, nothing read.
    d = _mnist_dir(tmp_path / "huge_dims_plain")
    data = (d / MNIST_NAMES[2]).read_bytes()
    (d / MNIST_NAMES[2]).write_bytes(data[:4] + struct.pack(">L", 2**32 - 1) + data[8:])
    cases.append(("mnist", d, "t10k-images-idx3-ubyte: truncated"))
    # 5. Image and label counts that disagree: caught from the headers.
    d = _mnist_dir(tmp_path / "count_mismatch")
    _write_idx(d / MNIST_NAMES[1], np.zeros(5, np.uint8))
    cases.append(("mnist", d, "holds 6 images but .* holds 5 labels"))
    report = _run_bounded(cases)
    assert len(report) == 5


def test_mnist_special_file_named_like_a_data_file(tmp_path):
    """A FIFO where a data file should be: not a file to read, and no hang."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs")
    from fastmlp.datasets import load_mnist
    d = _mnist_dir(tmp_path / "fifo")
    (d / MNIST_NAMES[3]).unlink()
    os.mkfifo(d / MNIST_NAMES[3])
    with pytest.raises((FileNotFoundError, ValueError), match="t10k-labels"):
        load_mnist(d)


def test_mnist_memory_error_names_the_file(tmp_path, monkeypatch):
    from fastmlp.datasets import _mnist, load_mnist
    d = _mnist_dir(tmp_path / "mem")

    def no_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(_mnist._Idx, "_read", lambda self, n: no_memory() if n > 100 else
                        bytearray(self._stream.read(n)))
    with pytest.raises(ValueError, match="train-.*-idx.-ubyte.*memory"):
        load_mnist(d)
