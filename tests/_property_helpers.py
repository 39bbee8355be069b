"""Helpers for tests/test_properties.py: input strategies, snapshots, the call-outcome rule.

The rule every property applies to one call (issue #10):

* the call either matches ``fastmlp.reference`` on the same inputs and the
  same public state (tolerance per ../shared/TESTING.md: exact for Relu, Add,
  Mul and accuracy; otherwise the simple fallback rtol 1e-9 / 1e-4 with atol
  1e-12 / 1e-5 times the scale of the values), or raises a clear
  TypeError/ValueError (RuntimeError for call order) whose message names an
  argument or a mutated attribute;
* it never mutates an input (bytes, dtype, shape, strides, writeable flag);
* after a raising call the object's public state is unchanged.

A call the reference accepts, on real-numeric inputs, with no invalid
mutation in effect, must succeed (otherwise a library that always raises
would pass).
"""
import copy
from collections import OrderedDict
import os
import re
import sys

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# ----------------------------------------------------------------------------- settings

# Examples per property; FASTMLP_PROPERTY_EXAMPLES scales it down (e.g. for a
# sanitizer build, 3-10x slower). deadline=None for the same reason.
EXAMPLES = int(os.environ.get("FASTMLP_PROPERTY_EXAMPLES", "0") or 0)


def property_settings(default):
    n = min(EXAMPLES, default) if EXAMPLES > 0 else default
    return settings(max_examples=max(1, n), deadline=None, derandomize=True, database=None,
                    print_blob=False,
                    suppress_health_check=list(HealthCheck))


# ----------------------------------------------------------------------------- tracing

# Each call is announced on stdout before it runs, so a crash of the interpreter
# (segfault, abort) shows which call it was in the runner's report.
TRACE = os.environ.get("FASTMLP_PROPERTY_TRACE", "1") != "0"


def describe(v):
    if isinstance(v, np.ndarray):
        flags = "".join(k for k, f in (("C", v.flags.c_contiguous), ("F", v.flags.f_contiguous),
                                       ("ro", not v.flags.writeable), ("unal", not v.flags.aligned))
                        if f)
        body = np.array2string(v.ravel()[:6], threshold=6, precision=4, max_line_width=10**6) \
            if v.dtype.kind != "O" else repr(v.ravel()[:6].tolist())
        body = " ".join(body.split())
        return f"array({v.dtype.str}, {v.shape}, strides={v.strides}, [{flags}], {body})"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {describe(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)) and len(v) <= 8:
        return type(v).__name__ + "(" + ", ".join(describe(x) for x in v) + ")"
    r = repr(v)
    return r if len(r) < 200 else r[:200] + "..."


def trace(*parts):
    if TRACE:
        sys.stdout.write("CALL " + " ".join(str(p) for p in parts) + "\n")
        sys.stdout.flush()


# ----------------------------------------------------------------------------- values

# float64/float32 weighted up: most calls should be valid, so that most compare values
DTYPES = ["f8", "f4"] * 4 + ["i8", "i4", "u1", "bool", "c16", "object", "str", ">f8", ">f4"]
REAL_DTYPES = ["f8", "f4", "i8", "i4", "u1", "bool", ">f8", ">f4"]
LAYOUTS = ["C", "C", "F", "strided", "reversed", "readonly", "bigendian", "unaligned"]
VALUE_KINDS = ["ints", "moderate", "ints", "moderate", "wild", "zeros"]
SPECIALS = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e38, -0.0, 5e-324, 1e-310, 3e38])


def base_values(shape, kind, seed):
    """float64 values: small integers (exact everywhere), moderate floats, or 'wild'
    (NaN, +-inf, huge, subnormal mixed into moderate floats)."""
    rng = np.random.default_rng(seed)
    if kind == "ints":
        return rng.integers(-4, 5, size=shape).astype(np.float64)
    if kind == "zeros":
        return np.zeros(shape)
    v = rng.uniform(-3, 3, size=shape)
    if kind == "wild" and v.size:
        pick = rng.random(size=shape) < 0.4
        v = np.where(pick, rng.choice(SPECIALS, size=shape), v)
    return v


def to_dtype(v, dtype):
    with np.errstate(all="ignore"):
        if dtype == "bool":
            return np.asarray(v != 0)
        if dtype == "object":
            return np.asarray(v, dtype=np.float64).astype(object)
        if dtype == "str":
            return np.asarray(v).astype(str)
        if dtype in ("i8", "i4", "u1"):
            w = np.nan_to_num(v, nan=0.0, posinf=100, neginf=-100)
            w = np.clip(w, -100, 100)
            if dtype == "u1":
                w = np.abs(w)
            return w.astype(dtype)
        if dtype == "c16":
            return np.asarray(v).astype(np.complex128)
        return np.asarray(v).astype(dtype)


def to_layout(a, layout):
    """A new array with the values of ``a`` in the given memory layout."""
    a = np.array(a, copy=True)
    if layout == "C" or a.dtype.kind in "OU":
        return np.ascontiguousarray(a) if a.ndim else a
    if layout == "F":
        return np.asfortranarray(a) if a.ndim else a
    if layout == "strided":
        if a.ndim == 0:
            return a
        big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
        if a.dtype.kind == "f":
            big[...] = np.nan
        view = big[tuple(slice(None, None, 2) for _ in a.shape)]
        view[...] = a
        return view
    if layout == "reversed":
        if a.ndim == 0:
            return a
        return np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])[(slice(None, None, -1),) * a.ndim]
    if layout == "readonly":
        a.flags.writeable = False
        return a
    if layout == "bigendian":
        if a.dtype.kind in "fic" and a.dtype.itemsize > 1:
            return a.astype(a.dtype.newbyteorder(">"))
        return a
    if layout == "unaligned":
        if a.dtype.itemsize <= 1 or a.size == 0:
            return a
        buf = bytearray(a.nbytes + 1)
        u = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        u[...] = a
        return u
    raise ValueError(layout)


@st.composite
def arrays(draw, shape, dtypes=DTYPES, layouts=LAYOUTS, kinds=VALUE_KINDS):
    """An array of ``shape`` with a drawn dtype, memory layout and value kind."""
    dtype = draw(st.sampled_from(dtypes))
    layout = draw(st.sampled_from(layouts))
    kind = draw(st.sampled_from(kinds))
    seed = draw(st.integers(0, 2**16))
    return to_layout(to_dtype(base_values(shape, kind, seed), dtype), layout)


def shapes(min_dims=0, max_dims=3, max_side=4):
    sides = [0] + [s for s in range(1, max_side + 1) for _ in range(2)]   # 0 one time in 2*max_side+1
    return st.lists(st.sampled_from(sides), min_size=min_dims, max_size=max_dims).map(tuple)


# ----------------------------------------------------------------------------- inputs

def snapshot(v):
    """What must not change: bytes, dtype, shape, strides, writeable (recursively)."""
    if isinstance(v, np.ndarray):
        data = v.tobytes() if v.dtype.kind != "O" else repr(v.tolist())
        return ("nd", data, v.dtype.str, v.shape, v.strides, v.flags.writeable)
    if isinstance(v, dict):
        return ("dict", tuple((k, snapshot(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(snapshot(x) for x in v))
    return ("obj", repr(v))


def _copy_array(v):
    """A copy keeping dtype (byte order included), memory order and the writeable flag."""
    c = np.array(v, copy=True, order="K")
    if not v.flags.writeable:
        c.flags.writeable = False
    return c


def _native_c_copy(v):
    """A native-byte-order, C-ordered copy."""
    dt = v.dtype.newbyteorder("=") if v.dtype.kind in "fiuc" else v.dtype
    return np.array(v, dtype=dt, copy=True, order="C")


def clone(v, memo=None, copy_array=_copy_array):
    """A deep copy that keeps dtype (byte order included), memory order, the writeable
    flag and object identity within one ``memo`` (an array held twice stays shared)."""
    memo = {} if memo is None else memo
    if isinstance(v, (np.ndarray, dict)) and id(v) in memo:
        return memo[id(v)]
    if isinstance(v, np.ndarray):
        memo[id(v)] = c = copy_array(v)
        return c
    if isinstance(v, dict):
        memo[id(v)] = c = OrderedDict() if isinstance(v, OrderedDict) else {}
        for k, x in v.items():
            c[k] = clone(x, memo, copy_array)
        return c
    if isinstance(v, list):
        return [clone(x, memo, copy_array) for x in v]
    if isinstance(v, tuple):
        return tuple(clone(x, memo, copy_array) for x in v)
    return copy.deepcopy(v, memo)


def ref_clone(v, memo=None):
    """``clone`` for the reference side, with arrays in native byte order and C order: the
    spec says non-contiguous, Fortran-ordered, read-only and big-endian arrays give the
    same results as C-contiguous ones, so that is what the reference is given."""
    return clone(v, memo, _native_c_copy)


def is_real_input(v):
    """Real numeric, non-empty array-likes (what the spec says is converted; empty
    input is one of the spec's errors)."""
    if isinstance(v, dict):
        return all(is_real_input(x) for x in v.values())
    if isinstance(v, np.ndarray):
        return v.dtype.kind in "biuf" and v.size > 0
    if isinstance(v, (bool, np.bool_)):
        return False   # a bool where a number is expected may be refused
    if isinstance(v, (int, float, np.integer, np.floating)):
        return True
    return False


def has_nonfinite(*vs):
    for v in vs:
        if isinstance(v, dict):
            if has_nonfinite(*v.values()):
                return True
            continue
        if isinstance(v, (float, np.floating, np.ndarray)) and np.asarray(v).dtype.kind in "fc":
            with np.errstate(all="ignore"):
                if not np.isfinite(np.asarray(v)).all():
                    return True
    return False


def uses_float32(*vs):
    """Whether any array among ``vs`` (dicts, tuples, objects' attributes) is float32."""
    for v in vs:
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.dtype.itemsize == 4:
            return True
        if isinstance(v, dict) and uses_float32(*v.values()):
            return True
        if isinstance(v, (list, tuple)) and uses_float32(*v):
            return True
    return False


def is_wild(*vs):
    """Any non-finite or huge value among the inputs: reductions may then overflow in a
    different order than the reference, so only their shape and dtype are compared."""
    for v in vs:
        if isinstance(v, dict):
            if is_wild(*v.values()):
                return True
            continue
        try:
            a = np.asarray(v)
        except Exception:
            continue
        if a.dtype.kind in "fc" and a.size:
            with np.errstate(all="ignore"):
                if not np.isfinite(a).all() or np.abs(a).max() > 1e15:
                    return True
    return False


# ----------------------------------------------------------------------------- outcomes

CLEAR = (TypeError, ValueError, RuntimeError)


class Raised:
    def __init__(self, exc):
        self.exc = exc

    def __repr__(self):
        return f"Raised({type(self.exc).__name__}: {self.exc})"


def outcome(fn):
    try:
        return fn()
    except Exception as exc:   # noqa: BLE001 -- any exception is an outcome to judge
        return Raised(exc)


def names_one_of(msg, names):
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", msg) for n in names)


def check_clear_error(exc, names, what):
    assert isinstance(exc, CLEAR) and not type(exc).__module__.startswith("numpy"), \
        f"{what}: not a clear error: {type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert names_one_of(str(exc), names), \
        f"{what}: the message names none of {sorted(set(names))}: {type(exc).__name__}: {exc}"


def unit(dtype):
    return float(np.finfo(dtype).eps) / 2


def _tol(dtype):
    return (1e-4, 1e-5) if np.dtype(dtype) == np.float32 else (1e-9, 1e-12)


class Mismatch(AssertionError):
    pass


def assert_match(got, want, what, exact=False, values=True, scale=None, atol=None, tol_dtype=None):
    """``got`` equals ``want`` in type, shape and dtype, and in value (bitwise when
    ``exact``, else the fallback tolerance of ``want``'s dtype, or of ``tol_dtype`` when
    that is float32: a Python float loss computed in float32)."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or list(got) != list(want):
            raise Mismatch(f"{what}: keys {list(got) if isinstance(got, dict) else type(got)} "
                           f"!= reference {list(want)}")
        for k in want:
            assert_match(got[k], want[k], f"{what}[{k!r}]", exact, values, scale, atol, tol_dtype)
        return
    if isinstance(want, tuple):
        if not isinstance(got, tuple) or len(got) != len(want):
            raise Mismatch(f"{what}: got {describe(got)}, reference {describe(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            assert_match(g, w, f"{what}[{i}]", exact, values, scale, atol, tol_dtype)
        return
    if isinstance(want, float) and not isinstance(want, np.floating):
        if not isinstance(got, float):
            raise Mismatch(f"{what}: got {type(got).__name__} {got!r}, reference a Python float")
        g, w = np.float64(got), np.float64(want)
        dtype = np.float64
    else:
        # a numpy scalar and a 0-d array of the same dtype are the same result (numpy's own
        # arithmetic turns one into the other, so the reference has no consistent choice)
        zero_d = (isinstance(want, np.generic) or isinstance(got, np.generic)) and np.ndim(got) == 0 \
            and np.ndim(want) == 0
        if isinstance(want, np.ndarray) != isinstance(got, np.ndarray) and not zero_d:
            raise Mismatch(f"{what}: got {type(got).__name__}, reference {type(want).__name__}")
        g, w = np.asarray(got), np.asarray(want)
        if g.shape != w.shape or g.dtype != w.dtype:
            raise Mismatch(f"{what}: got {g.dtype}{g.shape}, reference {w.dtype}{w.shape}")
        dtype = w.dtype if w.dtype.kind == "f" else np.float64
    if not values or w.dtype.kind not in "fbiu":
        return
    g64, w64 = g.astype(np.float64), w.astype(np.float64)
    if exact:
        same = (g64 == w64) | (np.isnan(g64) & np.isnan(w64))
        if not same.all():
            i = np.argmin(same.ravel())
            raise Mismatch(f"{what}: not bitwise equal; at flat index {i}: got "
                           f"{g64.ravel()[i]!r}, reference {w64.ravel()[i]!r}")
        return
    if tol_dtype is not None and np.dtype(tol_dtype) == np.float32:
        dtype = np.float32
    rtol, atol_scale = _tol(dtype)
    if scale is None:
        finite = w64[np.isfinite(w64)]
        scale = max(1.0, float(np.abs(finite).max()) if finite.size else 1.0)
    bound = rtol * np.abs(w64) + (atol if atol is not None else atol_scale * scale)
    with np.errstate(invalid="ignore"):
        err = np.abs(g64 - w64)
        ok = (g64 == w64) | (np.isnan(g64) & np.isnan(w64)) | (err <= bound)
    if not ok.all():
        i = int(np.argmin(ok.ravel()))
        raise Mismatch(f"{what}: {int((~ok).sum())} of {ok.size} values off; at flat index {i}: "
                       f"got {g64.ravel()[i]!r}, reference {w64.ravel()[i]!r}")


def judge(fast, refs, what, names, must_succeed, compare):
    """The outcome rule. ``fast``: the fast call's outcome; ``refs``: the candidate
    reference outcomes (any one may match); ``compare(got, want)`` raises Mismatch.
    Returns the reference outcome matched, or None when the fast call raised."""
    if isinstance(fast, Raised):
        if must_succeed and refs and not isinstance(refs[0], Raised):
            raise AssertionError(f"{what}: raised {type(fast.exc).__name__}: {fast.exc} on a valid "
                                 f"call the reference accepts")
        check_clear_error(fast.exc, names, what)
        return None
    problems = []
    for want in refs:
        if isinstance(want, Raised):
            problems.append(f"the reference raised {type(want.exc).__name__}: {want.exc}, "
                            f"the call returned {describe(fast)}")
            continue
        try:
            compare(fast, want)
            return want
        except Mismatch as m:
            problems.append(str(m))
    raise AssertionError(f"{what}: matches no reference outcome and raised nothing:\n  " +
                         "\n  ".join(problems))
