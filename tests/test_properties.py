"""Bounded hypothesis property suite over the public API (issue #10).

Every public layer, function, network method, optimizer and ``fastmlp.load``
is called on random shapes (0 and 1 included), memory layouts (C, Fortran,
strided, reversed, read-only, big-endian, unaligned), dtypes (float32/64,
ints, bool, complex, object, str), values (NaN, inf, huge) and random
mutations of public attributes between calls. Each call must (see
``_property_helpers.judge``):

* match ``fastmlp.reference`` given the same inputs and the same public
  state, or raise a clear TypeError/ValueError (RuntimeError for call order)
  whose message names the argument or the mutated attribute; a call the
  reference accepts on valid, finite, real input with no invalid mutation in
  effect must succeed;
* never crash, never change an input (bytes, strides, flags);
* after a raise, leave the object's public state unchanged, and the next
  valid call (the mutations undone) must match the reference.

The reference side of each call is a *twin*: a ``fastmlp.reference`` object
whose attributes are clones of the fast object's public attributes just
before the call. So a mutation is applied to both by construction.

Each property runs its hypothesis search in a child interpreter (with
faulthandler), so a segfault in one property is a failure of that property
that names the last call made, and the rest of the suite still runs.
``FASTMLP_PROPERTY_EXAMPLES=n`` caps the examples per property (sanitizer
builds); ``FASTMLP_PROPERTY_INPROCESS=1`` runs them in the pytest process.
"""
import math
import os
import subprocess
import sys
import tempfile
import textwrap
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _property_helpers as H  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import functions as F  # noqa: E402
from fastmlp import layers as L  # noqa: E402
from fastmlp import optimizers as O  # noqa: E402
from fastmlp import reference as R  # noqa: E402

PROPERTIES = {}


def prop(examples):
    """Register a property with its default number of examples."""
    def wrap(fn):
        wrapped = H.property_settings(examples)(given(data=st.data())(fn))
        PROPERTIES[fn.__name__] = (wrapped, examples)
        return wrapped
    return wrap


# ============================================================================ layers

def twin_of(obj, memo=None):
    """The reference object of the same class name with clones of ``obj``'s attributes."""
    memo = {} if memo is None else memo
    cls = getattr(R.layers, type(obj).__name__)
    twin = cls.__new__(cls)
    given = {}   # attribute -> (the value the twin computes with, the value as given)
    for k, v in vars(obj).items():
        v = original = H.ref_clone(v, memo)
        if isinstance(v, list):
            # a list where the layer keeps an array: treated as np.asarray(list), as every
            # argument is (the reference would fail on list.shape)
            v = H.outcome(lambda v=v: np.asarray(v))
            v = v if not isinstance(v, H.Raised) else None
        if k in ("x", "y", "out", "W", "b") and isinstance(v, np.ndarray) and v.dtype.kind in "biu":
            # the spec: integer or other real input is computed in float64; a cached array
            # replaced by an integer one is held to the same rule (the reference would compute
            # in the integer dtype, casting dout to it)
            v = v.astype(np.float64)
        if k == "t" and isinstance(twin, R.layers.SoftmaxWithLoss) and isinstance(v, np.ndarray) \
                and v.ndim == 1 and v.dtype.kind == "f" and np.isfinite(v).all() \
                and (v == np.round(v)).all():
            # forward takes whole-number float labels as labels, so a t holding them means those
            # labels (the reference would index with floats and raise IndexError)
            v = v.astype(np.intp)
        if v is not original:
            given[k] = (v, original)
        twin.__dict__[k] = v
    twin.__dict__["_given"] = given
    return twin


def public_state(obj):
    return {k: H.clone(v) for k, v in vars(obj).items() if not k.startswith("_")}


def compare_any(got, want, what, exact, values, tol_dtype=None):
    """assert_match extended to None, tuples of ints, dtype types and strings."""
    if want is None or isinstance(want, (str, type, int, np.dtype)) and not isinstance(want, bool):
        if type(got) is not type(want) or got != want:
            raise H.Mismatch(f"{what}: got {H.describe(got)}, reference {H.describe(want)}")
        return
    if isinstance(want, tuple) and all(isinstance(v, (int, np.integer)) for v in want):
        if tuple(got) != want if isinstance(got, tuple) else True:
            raise H.Mismatch(f"{what}: got {H.describe(got)}, reference {H.describe(want)}")
        return
    if isinstance(got, list) and isinstance(want, np.ndarray):
        got = np.asarray(got)   # a list attribute left as given; the twin holds np.asarray of it
    if isinstance(want, dict):
        if not isinstance(got, dict) or list(got) != list(want):
            raise H.Mismatch(f"{what}: got keys {H.describe(got)}, reference {list(want)}")
        for k in want:
            compare_any(got[k], want[k], f"{what}.{k}", exact, values, tol_dtype)
        return
    if isinstance(want, tuple):
        if not isinstance(got, tuple) or len(got) != len(want):
            raise H.Mismatch(f"{what}: got {H.describe(got)}, reference {H.describe(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            compare_any(g, w, f"{what}[{i}]", exact, values, tol_dtype)
        return
    H.assert_match(got, want, what, exact=exact, values=values, tol_dtype=tol_dtype)


def draw_replacement(data, current, kind="array"):
    """A new value for an attribute: other dtype, layout or shape, or not an array at all.
    Returns (value, benign): benign when only the memory layout changed."""
    cur = current if isinstance(current, np.ndarray) else None
    options = ["none", "str", "list", "random"]
    if cur is not None:
        options += ["dtype", "layout", "layout", "shorter", "longer", "transposed", "flat",
                    "scalar", "empty"]
        if kind == "labels":
            options += ["label_out_of_range"] * 4 + ["label_float"]
    choice = data.draw(st.sampled_from(options), label="replacement")
    if choice == "none":
        return None, False
    if choice == "str":
        return "abc", False
    if choice == "list":
        return cur.tolist() if cur is not None else [1.0, 2.0], False
    if choice == "random":
        return data.draw(H.arrays(data.draw(H.shapes(0, 3, 4))), label="random array"), False
    if choice == "dtype":
        dt = data.draw(st.sampled_from(["f4", "f8", "i8", "bool", "c16", "object", ">f8"]))
        return H.to_dtype(cur.astype(np.float64) if cur.dtype.kind in "biuf" else np.zeros(cur.shape),
                          dt), False
    if choice == "layout":
        lay = data.draw(st.sampled_from(["F", "strided", "reversed", "unaligned", "readonly", "bigendian"]))
        new = H.to_layout(cur, lay)
        benign = new.dtype == cur.dtype and lay != "readonly"
        return new, benign
    if choice == "shorter":
        return (cur[:-1] if cur.ndim and cur.shape[0] else cur.reshape(-1)[:0]).copy(), False
    if choice == "longer":
        if cur.ndim == 0:
            return np.stack([cur, cur]), False
        return np.concatenate([cur, cur[:1] if cur.shape[0] else np.zeros((1,) + cur.shape[1:],
                                                                           cur.dtype)]), False
    if choice == "transposed":
        return cur.T.copy(), False
    if choice == "flat":
        return cur.ravel().copy(), False
    if choice == "scalar":
        return (cur.ravel()[0] if cur.size else cur.dtype.type(0)), False
    if choice == "empty":
        return cur.reshape(-1)[:0].copy(), False
    if choice == "label_out_of_range":
        bad = data.draw(st.sampled_from([-1, 2**40, -2**62, 10**6, 3]))
        new = np.array(cur, copy=True)
        if new.size == 0:
            return np.array([bad]), False
        if new.ndim == 1:
            new = new.astype(np.int64)
            new[data.draw(st.integers(0, new.size - 1))] = bad
        else:
            new = np.full(new.shape, float(bad))
        return new, False
    if choice == "label_float":
        return cur.astype(np.float64) + 0.5, False
    raise AssertionError(choice)


def _x_for(data, label="x", min_dims=0, max_dims=3):
    shape = data.draw(H.shapes(min_dims, max_dims, 4), label=f"{label} shape")
    return data.draw(H.arrays(shape), label=label)


def _dout_like(data, shape, label="dout"):
    """Mostly the right shape; sometimes another shape or not an array."""
    how = data.draw(st.sampled_from(["right"] * 4 + ["other", "scalar", "str", "none"]))
    if how == "right" and shape is not None:
        return data.draw(H.arrays(tuple(shape)), label=label)
    if how == "other":
        return _x_for(data, label)
    if how == "scalar":
        return data.draw(st.sampled_from([1.0, 2, np.float32(0.5), np.array(1.5), True]), label=label)
    if how == "str":
        return "abc"
    return None


def _loss_dout(data):
    return data.draw(st.sampled_from([1, 1.0, 2.5, -1.0, 0.0, np.float32(2.0), np.float64(0.5),
                                      np.array(3.0), np.array(1.0, np.float32), np.array([1.0]),
                                      np.nan, np.inf, "abc", None, np.ones(3), 1j, True]),
                     label="dout")


def _same_shape_pair(data):
    shape = data.draw(H.shapes(0, 3, 4), label="shape")
    x = data.draw(H.arrays(shape), label="x")
    if data.draw(st.integers(0, 5), label="y shape differs") == 0:
        return x, _x_for(data, "y")
    y = data.draw(H.arrays(shape), label="y")
    if shape == () and data.draw(st.booleans(), label="python scalars"):
        with np.errstate(all="ignore"):
            return (float(x) if x.dtype.kind in "biuf" else x), (float(y) if y.dtype.kind in "biuf" else y)
    return x, y


def _affine_x(data, layer):
    W = layer.W
    k = W.shape[0] if isinstance(W, np.ndarray) and W.ndim == 2 else 3
    how = data.draw(st.sampled_from(["2d"] * 3 + ["nd", "other"]), label="x form")
    n = data.draw(st.integers(0, 3), label="N")
    if how == "2d":
        return data.draw(H.arrays((n, k)), label="x")
    if how == "nd" and k:
        a = data.draw(st.sampled_from([d for d in range(1, k + 1) if k % d == 0]))
        return data.draw(H.arrays((n, a, k // a)), label="x")
    return _x_for(data, "x")


def _labels(data, n, c, label="t"):
    how = data.draw(st.sampled_from(["labels"] * 3 + ["onehot", "onehot", "bad", "other"]),
                    label=f"{label} form")
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    if how == "labels":
        t = rng.integers(0, max(c, 1), size=n)
        dt = data.draw(st.sampled_from(["i8", "i4", "u1", "f8", "f4", ">f8"]))
        return H.to_layout(t.astype(dt), data.draw(st.sampled_from(H.LAYOUTS)))
    if how == "onehot":
        t = np.eye(max(c, 1))[rng.integers(0, max(c, 1), size=n)][:, :c]
        return data.draw(st.sampled_from(H.LAYOUTS).map(
            lambda lay: H.to_layout(t.astype(data.draw(st.sampled_from(["f8", "f4", "i8", "bool"]))),
                                    lay)))
    if how == "bad":
        t = rng.integers(0, max(c, 1), size=n)
        t, _ = draw_replacement(data, t, kind="labels")
        return t
    return _x_for(data, label)


# name -> (make(data) -> (fast layer, desc), forward(data, layer) -> args, mutable attributes,
#          exact, reduction, names per argument)
def _make_affine(data):
    k = data.draw(st.sampled_from([0, 1, 2, 3, 4, 1, 2, 3, 4]), label="K")
    m = data.draw(st.sampled_from([0, 1, 2, 3, 4, 1, 2, 3, 4]), label="M")
    W = data.draw(H.arrays((k, m), dtypes=["f8", "f4"] * 3 + ["i8", ">f8", "c16"],
                           kinds=["ints", "moderate"]), label="W")
    b = data.draw(H.arrays((m,), dtypes=["f8", "f4", "f8", "f4", "i8"], kinds=["ints", "moderate"]),
                  label="b")
    if data.draw(st.integers(0, 6), label="b wrong") == 0:
        b = _x_for(data, "b")
    return (W, b)


LAYER_SPECS = {
    "MulLayer": dict(ctor=lambda data: (), fwd=_same_shape_pair, attrs=["x", "y"], exact=True,
                     reduction=False, fwd_names=["x", "y"]),
    "AddLayer": dict(ctor=lambda data: (), fwd=_same_shape_pair, attrs=["shape", "dtype"], exact=True,
                     reduction=False, fwd_names=["x", "y"]),
    "Relu": dict(ctor=lambda data: (), fwd=lambda data: (_x_for(data),), attrs=["mask"], exact=True,
                 reduction=False, fwd_names=["x"]),
    "Sigmoid": dict(ctor=lambda data: (), fwd=lambda data: (_x_for(data),), attrs=["out"], exact=False,
                    reduction=False, fwd_names=["x"]),
    "Tanh": dict(ctor=lambda data: (), fwd=lambda data: (_x_for(data),), attrs=["out"], exact=False,
                 reduction=False, fwd_names=["x"]),
    "Identity": dict(ctor=lambda data: (), fwd=lambda data: (_x_for(data),), attrs=["shape", "dtype"],
                     exact=True, reduction=False, fwd_names=["x"]),
    "Affine": dict(ctor=_make_affine, fwd=None, attrs=["W", "b", "x", "original_x_shape"], exact=False,
                   reduction=True, fwd_names=["x"]),
    "SoftmaxWithLoss": dict(ctor=lambda data: (), fwd=None, attrs=["t", "y"], exact=False,
                            reduction=True, fwd_names=["x", "t"]),
    "MSELoss": dict(ctor=lambda data: (), fwd=None, attrs=["t", "y"], exact=False, reduction=True,
                    fwd_names=["y", "t"]),
}


def _forward_args(data, name, layer):
    spec = LAYER_SPECS[name]
    if spec["fwd"] is not None:
        return spec["fwd"](data)
    if name == "Affine":
        return (_affine_x(data, layer),)
    n = data.draw(st.integers(0, 3), label="N")
    c = data.draw(st.integers(0, 4), label="C")
    if data.draw(st.integers(0, 5), label="x odd shape") == 0:
        x = _x_for(data)
    else:
        x = data.draw(H.arrays((n, c)), label="x")
    if name == "SoftmaxWithLoss":
        return x, _labels(data, n, c)
    if data.draw(st.integers(0, 4), label="t odd") == 0:
        return x, _x_for(data, "t")
    return x, data.draw(H.arrays((n, c)), label="t")


def _output_shape(name, layer):
    """The dout shape backward expects, from the fast layer's public state (None if unknown)."""
    try:
        if name in ("MulLayer",):
            return np.shape(layer.x)
        if name == "AddLayer":
            return tuple(layer.shape)
        if name == "Relu":
            return np.shape(layer.mask)
        if name in ("Sigmoid", "Tanh"):
            return np.shape(layer.out)
        if name == "Identity":
            return tuple(layer.shape)
        if name == "Affine":
            return (np.shape(layer.x)[0], np.shape(layer.W)[1])
    except Exception:   # noqa: BLE001 -- a mutated attribute; any dout will do
        return None
    return None


def _valid_calls(name, fast):
    """A valid forward and backward for the layer's current (restored) parameters."""
    x = np.linspace(-2, 2, 6).reshape(2, 3)
    if name in ("MulLayer", "AddLayer"):
        return (x, x[::-1] + 0.5), np.ones((2, 3))
    if name in ("Relu", "Sigmoid", "Tanh", "Identity"):
        return (x,), np.ones((2, 3))
    if name == "Affine":
        k, m = fast.W.shape
        return (np.linspace(-1, 1, 2 * k).reshape(2, k),), np.ones((2, m))
    if name == "SoftmaxWithLoss":
        return (x, np.array([0, 2])), 1
    return (x, x * 2), 1


def run_call(fast, twin, method, args, what, names, must_succeed, exact, values, state_extra=()):
    """One call on the fast object and on its reference twin; check every invariant.
    Returns the fast outcome."""
    fast_args = args
    ref_args = tuple(H.ref_clone(a) for a in args)
    before_inputs = H.snapshot(fast_args)
    before_state = H.snapshot(vars(fast))
    H.trace(what, method, *(H.describe(a) for a in args))
    got = H.outcome(lambda: getattr(fast, method)(*fast_args))
    got = got if isinstance(got, H.Raised) else H.clone(got)
    want = H.outcome(lambda: getattr(twin, method)(*ref_args))
    want = want if isinstance(want, H.Raised) else H.clone(want)
    note(f"{what}.{method}: fast -> {H.describe(got)}; reference -> {H.describe(want)}")
    assert H.snapshot(fast_args) == before_inputs, f"{what}.{method} changed an input"
    if isinstance(got, H.Raised):
        assert H.snapshot(vars(fast)) == before_state, \
            f"{what}.{method} raised {got.exc!r} but changed the object's state"
    for k, (used, original) in twin.__dict__.pop("_given", {}).items():
        if twin.__dict__.get(k) is used:
            twin.__dict__[k] = original   # the state compared is the value the layer was given
    got_full = got if isinstance(got, H.Raised) else (got, public_state(fast))
    want_full = want if isinstance(want, H.Raised) else (want, public_state(twin))
    tol_dtype = np.float32 if H.uses_float32(got_full, want_full) else None
    H.judge(got_full, [want_full], f"{what}.{method}{tuple(H.describe(a) for a in args)}", names,
            must_succeed, lambda g, w: compare_any(g, w, f"{what}.{method}", exact, values, tol_dtype))
    return got


def _layer_property(data, name):
    spec = LAYER_SPECS[name]
    cls, rcls = getattr(L, name), getattr(R.layers, name)
    ctor = spec["ctor"](data)
    H.trace(name, "construct", *(H.describe(a) for a in ctor))
    fast = H.outcome(lambda: cls(*ctor))
    ref = H.outcome(lambda: rcls(*(H.ref_clone(a) for a in ctor)))
    if isinstance(fast, H.Raised) or isinstance(ref, H.Raised):
        H.judge(fast if isinstance(fast, H.Raised) else (None, public_state(fast)),
                [ref if isinstance(ref, H.Raised) else (None, public_state(ref))],
                f"{name}{tuple(H.describe(a) for a in ctor)}", ["W", "b"],
                all(H.is_real_input(a) and not H.is_wild(a) for a in ctor),
                lambda g, w: compare_any(g, w, name, False, True))
        return
    originals = {}      # attribute -> value before the first mutation (for the undo)
    mutated = []        # attributes whose replacement was not benign
    for step in range(data.draw(st.integers(1, 5), label="steps")):
        op = data.draw(st.sampled_from(["forward", "forward", "backward", "backward", "mutate"]),
                       label="op")
        if op == "mutate":
            attr = data.draw(st.sampled_from(spec["attrs"]), label="attribute")
            cur = getattr(fast, attr)
            value, benign = draw_replacement(data, cur, "labels" if (name, attr) == (
                "SoftmaxWithLoss", "t") and isinstance(cur, np.ndarray) and cur.ndim == 1 else "array")
            if attr == "dtype":
                value, benign = data.draw(st.sampled_from([np.float32, np.float64, np.int64, "abc",
                                                           None, complex])), False
            if attr in ("shape", "original_x_shape") and data.draw(st.booleans()):
                value = data.draw(st.sampled_from([(), (1,), (2, 3), (10**6,), (2, -1), "abc"]))
                benign = False
            H.trace(name, "set", attr, "=", H.describe(value))
            note(f"{name}.{attr} = {H.describe(value)}")
            originals.setdefault(attr, cur)
            setattr(fast, attr, value)
            if not benign:
                mutated.append(attr)
            continue
        # an error about mutated state may name any attribute the state is inconsistent with
        blame = mutated + spec["attrs"] if mutated else []
        if op == "forward":
            args = _forward_args(data, name, fast)
            names = spec["fwd_names"] + blame
        else:
            if name in ("SoftmaxWithLoss", "MSELoss"):
                args = (_loss_dout(data),)
            else:
                args = (_dout_like(data, _output_shape(name, fast)),)
            names = ["dout", "forward"] + blame
        valid = not mutated and all(H.is_real_input(a) for a in args) and not H.has_nonfinite(*args)
        values = not (spec["reduction"] and H.is_wild(*args, *(v for v in vars(fast).values())))
        twin = twin_of(fast)
        got = run_call(fast, twin, op, args, name, names, valid, spec["exact"], values)
        if isinstance(got, H.Raised):
            # the next valid call, the mutations undone, gives the reference's result
            for attr, value in originals.items():
                setattr(fast, attr, value)
            originals.clear()
            mutated.clear()
            fwd_args, dout = _valid_calls(name, fast)
            for method, a in (("forward", fwd_args), ("backward", (dout,))):
                run_call(fast, twin_of(fast), method, a, f"{name} (after an error)", ["x"], True,
                         spec["exact"], True)


@prop(150)
def prop_mul_layer(data):
    _layer_property(data, "MulLayer")


@prop(100)
def prop_add_layer(data):
    _layer_property(data, "AddLayer")


@prop(150)
def prop_relu_layer(data):
    _layer_property(data, "Relu")


@prop(150)
def prop_sigmoid_layer(data):
    _layer_property(data, "Sigmoid")


@prop(150)
def prop_tanh_layer(data):
    _layer_property(data, "Tanh")


@prop(100)
def prop_identity_layer(data):
    _layer_property(data, "Identity")


@prop(200)
def prop_affine_layer(data):
    _layer_property(data, "Affine")


@prop(200)
def prop_softmax_with_loss_layer(data):
    _layer_property(data, "SoftmaxWithLoss")


@prop(150)
def prop_mse_loss_layer(data):
    _layer_property(data, "MSELoss")


# ============================================================================ functions

FUNCTIONS = {"sigmoid": (False, False), "tanh": (False, False), "relu": (True, False), "softmax": (False, True),
             "cross_entropy_error": (False, True), "mean_squared_error": (False, True),
             "step_function": (True, False), "identity_function": (True, False),
             "relu_grad": (True, False), "sigmoid_grad": (False, False),
             "sum_squared_error": (False, True), "softmax_loss": (False, True)}
ELEMENTWISE = ("sigmoid", "tanh", "relu", "step_function", "identity_function", "relu_grad",
               "sigmoid_grad")


@prop(300)
def prop_functions(data):
    # every exported function (fastmlp.functions.__all__) has a reference twin
    assert set(F.__all__) <= set(FUNCTIONS) | set(), f"untested functions {set(F.__all__) - set(FUNCTIONS)}"
    name = data.draw(st.sampled_from(sorted(F.__all__)), label="function")
    exact, reduction = FUNCTIONS[name]
    if name in ELEMENTWISE:
        args = (_x_for(data),)
        if data.draw(st.integers(0, 4)) == 0:
            args = (data.draw(st.sampled_from([0.5, -3, True, np.float32(2), [1.0, -2.0], "x", None])),)
    elif name == "softmax":
        odd = data.draw(st.integers(0, 4), label="odd ndim") == 0
        args = (_x_for(data, min_dims=0 if odd else 1, max_dims=3 if odd else 2),)
    elif name in ("cross_entropy_error", "softmax_loss"):
        n = data.draw(st.sampled_from([0, 1, 2, 3, 1, 2, 3]), label="N")
        c = data.draw(st.sampled_from([0, 1, 2, 3, 4, 1, 2, 3, 4]), label="C")
        y = data.draw(H.arrays(data.draw(st.sampled_from([(n, c)] * 4 + [(c,), (n, c, 1)])),
                               kinds=["moderate", "ints", "moderate", "wild"]), label="y")
        with np.errstate(all="ignore"):
            if isinstance(y, np.ndarray) and y.dtype.kind in "f" and data.draw(st.booleans()):
                y = np.abs(y)   # probabilities-like, so log() is finite
        args = (y, _labels(data, n if y.ndim != 1 else 1, c)) if y.ndim else (y, [0])
        if y.ndim == 1 and data.draw(st.booleans()):
            args = (y, data.draw(st.sampled_from([0, c - 1, c, -1, np.eye(max(c, 1))[0][:c]])))
    else:
        x, y = _same_shape_pair(data)
        args = (x, y)
    names = (["x"] if name in ELEMENTWISE + ("softmax",) else
             ["x", "t"] if name == "softmax_loss" else ["y", "t"])
    valid = all(H.is_real_input(a) for a in args) and not H.is_wild(*args)
    fast_fn, ref_fn = getattr(F, name), getattr(R.functions, name)
    if name == "identity_function":   # the book's: its argument itself, whatever it is
        assert fast_fn(*args) is args[0] and ref_fn(*args) is args[0]
        return
    ref_args = tuple(H.ref_clone(a) for a in args)
    before = H.snapshot(args)
    H.trace("functions", name, *(H.describe(a) for a in args))
    got = H.outcome(lambda: fast_fn(*args))
    want = H.outcome(lambda: ref_fn(*ref_args))
    note(f"{name}: fast -> {H.describe(got)}; reference -> {H.describe(want)}")
    assert H.snapshot(args) == before, f"{name} changed an input"
    values = not (reduction and H.is_wild(*args))
    tol_dtype = np.float32 if H.uses_float32(got, want, args) else None
    H.judge(got, [want], f"{name}{tuple(H.describe(a) for a in args)}", names, valid,
            lambda g, w: compare_any(g, w, name, exact, values, tol_dtype))


# ============================================================================ optimizers

OPT_CLASSES = {"SGD": {"lr": 0.1}, "Momentum": {"lr": 0.1, "momentum": 0.9},
               "Nesterov": {"lr": 0.1, "momentum": 0.9}, "AdaGrad": {"lr": 0.1},
               "RMSprop": {"lr": 0.1, "decay_rate": 0.9}, "Adam": {"lr": 0.1, "beta1": 0.9, "beta2": 0.99},
               "NesterovSklearn": {"lr": 0.1, "momentum": 0.9, "variant": "sklearn"}}
OPT_CLASS = {"NesterovSklearn": "Nesterov"}   # scikit-learn's Nesterov rule is a variant
OPT_STATE = {"SGD": (), "Momentum": ("v",), "Nesterov": ("v",), "AdaGrad": ("h",), "RMSprop": ("h",),
             "Adam": ("m", "v"), "NesterovSklearn": ("v",)}


def optimizer_twin(fast):
    cls = getattr(R.optimizers, type(fast).__name__)
    twin = cls.__new__(cls)
    memo = {}
    for k, v in vars(fast).items():
        twin.__dict__[k] = H.ref_clone(v, memo)
    return twin


def optimizer_state(opt):
    return {k: H.clone(v) for k, v in vars(opt).items() if not k.startswith("_")}


@prop(300)
def prop_optimizers(data):
    name = data.draw(st.sampled_from(sorted(OPT_CLASSES)), label="optimizer")
    dtype = data.draw(st.sampled_from(["f8", "f4"]), label="dtype")
    keys = data.draw(st.lists(st.sampled_from(["W1", "b1", "W2"]), min_size=1, max_size=3, unique=True))
    pshapes = {k: data.draw(H.shapes(1 if k[0] == "b" else 2, 1 if k[0] == "b" else 2, 3),
                            label=f"shape {k}") for k in keys}
    params = {k: data.draw(H.arrays(s, dtypes=[dtype] * 16 + ["i8", ">" + dtype],
                                    layouts=["C"] * 12 + H.LAYOUTS, kinds=["moderate", "ints"]),
                           label=f"params[{k!r}]") for k, s in pshapes.items()}
    fast = getattr(O, OPT_CLASS.get(name, name))(**OPT_CLASSES[name])
    mutated = []
    originals = {}
    for step in range(data.draw(st.integers(1, 4), label="steps")):
        op = data.draw(st.sampled_from(["update"] * 4 + ["mutate"]), label="op")
        if op == "mutate":
            what = data.draw(st.sampled_from(["lr", "state", "state_entry", "params_entry", "hyper"]))
            if what == "lr" or (what == "hyper" and name in ("SGD", "AdaGrad")):
                value = data.draw(st.sampled_from([np.nan, -0.1, 0.0, "abc", None, np.inf, 0.05,
                                                   1e300, np.float32(0.2), [0.1]]))
                H.trace(name, "set lr =", repr(value))
                note(f"opt.lr = {value!r}")
                originals.setdefault("lr", fast.lr)
                fast.lr = value
                if not (isinstance(value, float) and math.isfinite(value) and value > 0):
                    mutated.append("lr")
            elif what == "hyper":
                attr = {"Momentum": "momentum", "Nesterov": "momentum", "RMSprop": "decay_rate",
                        "NesterovSklearn": "momentum",
                        "Adam": data.draw(st.sampled_from(["beta1", "beta2", "iter"]))}[name]
                value = data.draw(st.sampled_from([np.nan, -1.0, 1.5, "abc", None, 0.5, -3, 2**62]))
                H.trace(name, "set", attr, "=", repr(value))
                note(f"opt.{attr} = {value!r}")
                originals.setdefault(attr, getattr(fast, attr))
                setattr(fast, attr, value)
                mutated.append(attr)
            elif what in ("state", "state_entry") and OPT_STATE[name]:
                attr = data.draw(st.sampled_from(OPT_STATE[name]))
                cur = getattr(fast, attr)
                originals.setdefault(attr, H.clone(cur))
                if what == "state" or not isinstance(cur, dict) or not cur:
                    value = data.draw(st.sampled_from(["none", "str", "empty", "other_keys", "list"]))
                    value = {"none": None, "str": "abc", "empty": {}, "list": [1.0],
                             "other_keys": {"zz": np.zeros(2)}}[value]
                    setattr(fast, attr, value)
                else:
                    k = data.draw(st.sampled_from(sorted(cur)))
                    value, benign = draw_replacement(data, cur[k])
                    cur[k] = value
                    value = {k: value}
                H.trace(name, "set state", attr, H.describe(value))
                note(f"opt.{attr} <- {H.describe(value)}")
                mutated.append(attr)
            else:
                k = data.draw(st.sampled_from(keys))
                value, benign = draw_replacement(data, params[k])
                H.trace(name, f"params[{k!r}] =", H.describe(value))
                note(f"params[{k!r}] = {H.describe(value)}")
                originals.setdefault(("params", k), params[k])
                params[k] = value
                if not benign:
                    mutated.append("params")
            continue
        grads = {}
        for k in params:
            shape = np.shape(params[k]) if isinstance(params[k], np.ndarray) else (2,)
            if data.draw(st.integers(0, 7), label=f"grads[{k!r}] odd") == 0:
                grads[k] = _x_for(data, f"grads[{k!r}]")
            else:
                grads[k] = data.draw(H.arrays(shape, dtypes=["f8", "f4"] * 6 + [
                    "i8", "bool", "c16", "object", ">f8"]),
                                     label=f"grads[{k!r}]")
        if data.draw(st.integers(0, 19), label="grads missing key") == 0:
            grads.pop(sorted(grads)[0])
        pvalid = all(isinstance(p, np.ndarray) and p.dtype.str in ("<f8", "<f4") and p.flags.writeable
                     and p.size for p in params.values()) and len({p.dtype for p in params.values()}) == 1
        valid = (not mutated and pvalid and set(grads) == set(params)
                 and all(np.shape(grads[k]) == np.shape(params[k]) for k in params)
                 and all(H.is_real_input(g) for g in grads.values()) and not H.is_wild(grads))
        raised = _optimizer_call(fast, params, grads, name, mutated, valid)
        if raised and mutated:
            # the next valid call, the mutations undone, gives the reference's result
            for attr, value in originals.items():
                if isinstance(attr, tuple):
                    params[attr[1]] = value
                else:
                    setattr(fast, attr, value)
            originals.clear()
            mutated.clear()
            good = {k: np.ascontiguousarray(p, dtype=np.dtype(dtype)) if not (
                isinstance(p, np.ndarray) and p.dtype == np.dtype(dtype) and p.flags.writeable) else p
                    for k, p in params.items()}
            params.clear()
            params.update(good)
            grads = {k: np.full(np.shape(p), 0.5) for k, p in params.items()}
            _optimizer_call(fast, params, grads, name + " (after an error)", [],
                            all(np.size(p) for p in params.values()))


def _optimizer_call(fast, params, grads, name, mutated, valid):
    twin = optimizer_twin(fast)
    ref_params = H.clone(params)
    ref_grads = H.ref_clone(grads)
    for k, g in ref_grads.items():
        # the spec: other real input is converted to the parameter dtype (the reference would
        # otherwise promote its state, e.g. Momentum's v, to float64 for float32 params)
        p = params.get(k)
        if isinstance(p, np.ndarray) and p.dtype.kind == "f" and isinstance(g, np.ndarray) \
                and g.dtype.kind in "biuf":
            with np.errstate(all="ignore"):
                ref_grads[k] = g.astype(p.dtype.newbyteorder("="))
    before_grads = H.snapshot(grads)
    before_params = H.snapshot(params)
    before_state = H.snapshot(vars(fast))
    H.trace(name, "update", H.describe(params), H.describe(grads))
    got = H.outcome(lambda: fast.update(params, grads))
    want = H.outcome(lambda: twin.update(ref_params, ref_grads))
    note(f"{name}.update: fast -> {H.describe(got)}; reference -> {H.describe(want)}")
    assert H.snapshot(grads) == before_grads, f"{name}.update changed grads"
    names = ["params", "grads", "lr"] + list(params) + [f"params[{k!r}]" for k in params] + \
        [f"grads[{k!r}]" for k in params] + mutated
    if isinstance(got, H.Raised):
        assert H.snapshot(params) == before_params, f"{name}.update raised {got.exc!r} but changed params"
        assert H.snapshot(vars(fast)) == before_state, \
            f"{name}.update raised {got.exc!r} but changed its state"
        H.judge(got, [want], f"{name}.update", names, valid, None)
        return True
    values = not H.is_wild(params, grads, ref_params)
    got_full = (H.clone(params), {k: v for k, v in optimizer_state(fast).items()})
    want_full = want if isinstance(want, H.Raised) else (ref_params, optimizer_state(twin))
    H.judge(got_full, [want_full], f"{name}.update({H.describe(params)}, {H.describe(grads)})", names,
            valid, lambda g, w: compare_any(g, w, f"{name}.update", False, values,
                                            np.float32 if H.uses_float32(params) else None))
    return False


# ============================================================================ networks

CONFIG_MUTATIONS = {
    "activation": ["sigmoid", "relu", "tanh", "identity", "softplus", None, 3],
    "dtype": [np.float32, np.float64, "float16", np.int64, None, "abc"],
    "hidden_size_list": [[], [5], [2, 2, 2], "abc", None, [0], [-1]],
    "loss_name": ["mse", "cross_entropy", "hinge", None],
    "weight_decay_lambda": [0, 0.5, -1.0, np.nan, np.inf, "abc", None, 1e300],
    "output_size": ["+1", "-1", 0, -1, "abc", 2**62, None],
    "input_size": ["+1", "-1", 0, -1, "abc", 2**62, None],
    "hidden_layer_num": ["+1", "-1", 0, 10],
}


LAST_GRADS = {}


def net_twin(net, relink_params, relink_layers):
    """A reference network with clones of ``net``'s public attributes. Affine layers
    whose index is in ``relink_params`` hold the twin's params (the params entry was
    replaced: the issue says predict/gradient/save see it); those in ``relink_layers``
    give their W/b to the twin's params (the layer's arrays replaced, params following)."""
    cls = R.TwoLayerNet if isinstance(net, fastmlp.TwoLayerNet) else R.MultiLayerNet
    twin = cls.__new__(cls)
    memo = {}
    # params first, before the twin has layers: a params setter that hands the arrays to
    # the layers then has none to hand them to, and the layers' own W/b are kept as they are
    twin.params = H.ref_clone(dict(net.params), memo)
    for k, v in vars(net).items():
        if k.startswith("_") or k == "params":
            continue
        if k == "layers":
            v = OrderedDict((n, twin_of(layer, memo) if hasattr(R.layers, type(layer).__name__)
                             else H.clone(layer, memo)) for n, layer in v.items())
        elif k == "last_layer" and hasattr(R.layers, type(v).__name__):
            v = twin_of(v, memo)
        else:
            v = H.ref_clone(v, memo)
        twin.__dict__[k] = v
    for i in relink_params:
        for p in "Wb":
            if f"Affine{i}" in twin.layers and f"{p}{i}" in twin.params:
                setattr(twin.layers[f"Affine{i}"], p, twin.params[f"{p}{i}"])
    for i in relink_layers:
        for p in "Wb":
            if f"Affine{i}" in twin.layers:
                twin.params[f"{p}{i}"] = getattr(twin.layers[f"Affine{i}"], p)
    return twin


def net_from_config(net):
    """A fresh reference network built from ``net``'s (mutated) public configuration
    and ``net.params``, or None when that configuration cannot be built."""
    try:
        twin = R.MultiLayerNet(net.input_size, net.hidden_size_list, net.output_size,
                               activation=net.activation, weight_decay_lambda=net.weight_decay_lambda,
                               dtype=net.dtype, loss=net.loss_name)
        for k, p in twin.params.items():
            src = net.params[k]
            if not isinstance(src, np.ndarray) or src.shape != p.shape or src.dtype.kind != "f":
                return None
            p[...] = src
        return twin
    except Exception:   # noqa: BLE001 -- an invalid configuration has no such twin
        return None


def _net_x(data, net, label="x"):
    how = data.draw(st.sampled_from(["valid"] * 9 + ["other", "buffer", "buffer", "nonarray"]),
                    label=f"{label} form")
    if how == "valid":
        n = data.draw(st.sampled_from([0, 1, 2, 3, 1, 2, 3]), label="N")
        k = net.input_size if isinstance(net.input_size, int) and 0 <= net.input_size < 10 else 2
        return data.draw(H.arrays((n, k), dtypes=H.REAL_DTYPES * 2 + H.DTYPES,
                                  kinds=["ints", "moderate"] * 3 + H.VALUE_KINDS), label=label)
    if how == "other":
        return _x_for(data, label)
    if how == "buffer":
        pool = []
        for layer in getattr(net, "layers", {}).values():
            for attr in ("x", "mask", "out", "dW", "db", "W"):
                v = getattr(layer, attr, None)
                if isinstance(v, np.ndarray):
                    pool.append(v)
        for attr in ("y", "t"):
            v = getattr(net.last_layer, attr, None)
            if isinstance(v, np.ndarray):
                pool.append(v)
        pool += [v for v in LAST_GRADS.get(id(net), {}).values() if isinstance(v, np.ndarray)]
        pool += [v for v in net.params.values() if isinstance(v, np.ndarray)]
        if pool:
            return pool[data.draw(st.integers(0, len(pool) - 1), label=f"{label} buffer")]
        return _x_for(data, label)
    return data.draw(st.sampled_from(["abc", None, [[1.0, 2.0]], 3.0]), label=label)


def _net_t(data, net, x):
    n = x.shape[0] if isinstance(x, np.ndarray) and x.ndim >= 1 else 2
    c = net.output_size if isinstance(net.output_size, int) and 0 <= net.output_size < 10 else 2
    if net.loss_name == "mse":
        if data.draw(st.integers(0, 4), label="t odd") == 0:
            return _x_for(data, "t")
        return data.draw(H.arrays((n, c)), label="t")
    return _labels(data, n, c)


def _make_net(data):
    LAST_GRADS.clear()   # keyed by id(net): an id is reused by a later example's network
    dtype = data.draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    seed = data.draw(st.integers(0, 100), label="seed")
    inp = data.draw(st.integers(1, 4), label="input_size")
    out = data.draw(st.integers(1, 4), label="output_size")
    if data.draw(st.integers(0, 3), label="TwoLayerNet?") == 0:
        hid = data.draw(st.integers(1, 4), label="hidden_size")
        args = (inp, hid, out)
        kw = dict(weight_init_std=0.5, dtype=dtype, seed=seed)
        return fastmlp.TwoLayerNet(*args, **kw), f"TwoLayerNet{args}, {kw}"
    hidden = data.draw(st.lists(st.integers(1, 4), min_size=0, max_size=2), label="hidden_size_list")
    kw = dict(activation=data.draw(st.sampled_from(["relu", "sigmoid", "tanh", "identity"])),
              weight_decay_lambda=data.draw(st.sampled_from([0, 0.1])), dtype=dtype, seed=seed,
              loss=data.draw(st.sampled_from(["cross_entropy", "cross_entropy", "mse"])))
    return fastmlp.MultiLayerNet(inp, hidden, out, **kw), f"MultiLayerNet({inp}, {hidden}, {out}, {kw})"


def _numgrad_tol(net):
    dt = np.dtype(net.dtype) if net.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return 6e-4 if dt == np.float32 else 1e-8


def _net_call(net, method, args, what, names, valid, values, relink_params, relink_layers,
              config_mutated, opt_spec=None):
    """One network call, compared with each candidate reference twin."""
    candidates = [net_twin(net, relink_params, set())]
    if relink_layers:
        candidates.append(net_twin(net, relink_params, relink_layers))
    if config_mutated:
        fresh = net_from_config(net)
        if fresh is not None:
            candidates.append(fresh)
    ref_args = [tuple(H.ref_clone(a) for a in args) for _ in candidates]   # before the call
    before_inputs = H.snapshot(tuple(args))
    before_params = H.snapshot(net.params)
    before_layers = H.snapshot({n: (getattr(layer, "W", None), getattr(layer, "b", None))
                                for n, layer in net.layers.items()})
    H.trace(what, method, *(H.describe(a) for a in args))

    def run(obj, a):
        if method == "train_step":
            opt_name, hyper = opt_spec
            if isinstance(obj, fastmlp.MultiLayerNet):
                loss = obj.train_step(*a, getattr(O, opt_name)(**hyper))
            else:   # the reference has no train_step: its definition, spelled out
                grads = obj.gradient(*a)
                loss = obj.last_loss
                if math.isfinite(loss):
                    getattr(R.optimizers, opt_name)(**hyper).update(obj.params, grads)
            return loss, H.clone(obj.params)
        raw = getattr(obj, method)(*a)
        if obj is net and method == "gradient":
            LAST_GRADS[id(net)] = raw   # the buffers gradient returned, to pass back in as x
        result = H.clone(raw)
        if method == "gradient":
            return result, obj.last_loss, H.clone(obj.params)
        return result, H.clone(obj.params)

    got = H.outcome(lambda: run(net, args))
    wants = [H.outcome(lambda c=c, a=a: run(c, a)) for c, a in zip(candidates, ref_args)]
    note(f"{what}.{method}: fast -> {H.describe(got)}; reference -> {[H.describe(w) for w in wants]}")
    # train_step updates params in place, as documented: an x that *is* a parameter array
    # changes with it (its value at the call is what the step must have used)
    own = [a for a in args if isinstance(a, np.ndarray) and method == "train_step" and any(
        isinstance(p, np.ndarray) and np.shares_memory(a, p) for p in net.params.values())]
    after_inputs = H.snapshot(tuple(args))
    changed = [i for i, a in enumerate(args) if not any(a is o for o in own)
               and after_inputs[1][i] != before_inputs[1][i]]
    assert not changed, f"{what}.{method} changed input {changed} (or an input that aliases " \
                        f"the network's buffers was overwritten)"
    if isinstance(got, H.Raised) or method not in ("train_step",):
        assert H.snapshot(net.params) == before_params, \
            f"{what}.{method} changed params" + (f" and raised {got.exc!r}" if isinstance(got, H.Raised)
                                                 else "")
    if isinstance(got, H.Raised):
        assert H.snapshot({n: (getattr(layer, "W", None), getattr(layer, "b", None))
                           for n, layer in net.layers.items()}) == before_layers, \
            f"{what}.{method} raised {got.exc!r} but changed a layer's W or b"
    atol = _numgrad_tol(net) if method == "numerical_gradient" else None

    tol_dtype = np.float32 if H.uses_float32(net.params, got) else None

    def compare(g, w):
        exact = method == "accuracy"
        if atol is not None:
            H.assert_match(g[0], w[0], f"{what}.{method}", values=values, atol=atol, tol_dtype=tol_dtype)
            compare_any(g[1:], w[1:], f"{what}.{method} params", False, values, tol_dtype)
        else:
            compare_any(g, w, f"{what}.{method}", exact, values, tol_dtype)
    H.judge(got, wants, f"{what}.{method}{tuple(H.describe(a) for a in args)}", names, valid, compare)
    return got


@prop(300)
def prop_networks(data):
    net, desc = _make_net(data)
    note(desc)
    H.trace("net", desc)
    originals = []          # (undo function) for every mutation, in order
    mutated_names = []      # names an error may give for the mutations in effect
    benign = True
    relink_params, relink_layers = set(), set()
    config_mutated = False
    for step in range(data.draw(st.integers(1, 5), label="steps")):
        op = data.draw(st.sampled_from(["predict", "loss", "accuracy", "gradient", "gradient",
                                        "train_step", "train_step", "numerical_gradient", "save",
                                        "mutate", "mutate", "mutate"]), label="op")
        if op == "mutate":
            kind = data.draw(st.sampled_from(["config", "param", "param", "layer", "last"]),
                             label="mutation")
            if kind == "config":
                attr = data.draw(st.sampled_from(sorted(CONFIG_MUTATIONS)), label="attribute")
                value = data.draw(st.sampled_from(CONFIG_MUTATIONS[attr]), label="value")
                cur = getattr(net, attr)
                if isinstance(value, str) and value[0] in "+-" and isinstance(cur, int):
                    value = cur + int(value)
                is_benign = attr == "weight_decay_lambda" and isinstance(value, (int, float)) \
                    and value in (0, 0.5)
                originals.append(lambda a=attr, v=cur: setattr(net, a, v))
                setattr(net, attr, value)
                mutated_names += [attr]
                config_mutated = config_mutated or not is_benign
                H.trace("net set", attr, "=", repr(value))
                note(f"net.{attr} = {value!r}")
            elif kind == "param":
                key = data.draw(st.sampled_from(sorted(net.params)), label="param")
                cur = net.params[key]
                if data.draw(st.booleans(), label="fresh values"):
                    value = data.draw(H.arrays(np.shape(cur), dtypes=[np.dtype(net.dtype).str] * 3 +
                                               H.DTYPES, layouts=["C"] * 3 + H.LAYOUTS,
                                               kinds=["moderate", "ints"]), label="new param")
                    is_benign = value.dtype == cur.dtype and value.flags.writeable
                else:
                    value, is_benign = draw_replacement(data, cur)
                originals.append(lambda k=key, v=cur: net.params.__setitem__(k, v))
                net.params[key] = value
                relink_params.add(int(key[1:]))
                relink_layers.discard(int(key[1:]))
                mutated_names += [key, key[0], "params", f"Affine{key[1:]}"]
                H.trace(f"net.params[{key!r}] =", H.describe(value))
                note(f"net.params[{key!r}] = {H.describe(value)}")
            elif kind == "layer":
                lname = data.draw(st.sampled_from(list(net.layers)), label="layer")
                layer = net.layers[lname]
                attr = data.draw(st.sampled_from([a for a in ("W", "b", "x", "mask", "out", "dW")
                                                  if a in vars(layer)]), label="layer attribute")
                cur = getattr(layer, attr)
                value, is_benign = draw_replacement(data, cur)
                originals.append(lambda o=layer, a=attr, v=cur: setattr(o, a, v))
                setattr(layer, attr, value)
                if attr in ("W", "b"):
                    i = int(lname[len("Affine"):])
                    relink_layers.add(i)
                    relink_params.discard(i)
                mutated_names += [lname, attr]
                H.trace(f"net.layers[{lname!r}].{attr} =", H.describe(value))
                note(f"net.layers[{lname!r}].{attr} = {H.describe(value)}")
            else:
                attr = data.draw(st.sampled_from(["t", "y", "loss"]), label="last_layer attribute")
                cur = getattr(net.last_layer, attr)
                value, is_benign = draw_replacement(
                    data, cur, "labels" if isinstance(cur, np.ndarray) and cur.ndim == 1 else "array")
                originals.append(lambda a=attr, v=cur: setattr(net.last_layer, a, v))
                setattr(net.last_layer, attr, value)
                # the loss layer's t, y and loss are outputs of the last call: any value is
                # overwritten by the next one, so the mutation changes no expected result
                is_benign = True
                mutated_names += ["last_layer", "lastLayer", attr]
                H.trace(f"net.last_layer.{attr} =", H.describe(value))
                note(f"net.last_layer.{attr} = {H.describe(value)}")
            benign = benign and is_benign
            continue
        x = _net_x(data, net)
        names = ["x"] + mutated_names
        if op == "predict":
            args = (x,)
        elif op == "save":
            _net_save(net, x, names, benign, relink_params, relink_layers)
            continue
        else:
            args = (x, _net_t(data, net, x))
            names = names + ["t"] + (["loss", "accuracy"] if op == "accuracy" else [])
        if op == "numerical_gradient" and (
                sum(np.size(p) for p in net.params.values()) > 40 or np.size(x) > 12):
            op = "gradient"
        opt_spec = None
        if op == "train_step":
            opt_name = data.draw(st.sampled_from(["SGD", "SGD", "Momentum", "Adam", "AdaGrad", "RMSprop",
                                                  "Nesterov"]), label="optimizer")
            opt_spec = (opt_name, OPT_CLASSES[opt_name])
            names = names + ["lr", "optimizer", "params"]
        valid = benign and all(H.is_real_input(a) for a in args)
        values = not H.is_wild(*args, net.params)
        got = _net_call(net, op, args, desc, names, valid, values, relink_params, relink_layers,
                        config_mutated, opt_spec)
        if isinstance(got, H.Raised) and originals:
            for undo in reversed(originals):
                undo()
            originals.clear()
            mutated_names = []
            benign = True
            relink_params, relink_layers = set(), set()
            config_mutated = False
            xv = np.linspace(-1, 1, 2 * net.input_size).reshape(2, net.input_size)
            tv = (np.linspace(0, 1, 2 * net.output_size).reshape(2, net.output_size)
                  if net.loss_name == "mse" else np.arange(2) % net.output_size)
            for method, a in (("predict", (xv,)), ("gradient", (xv, tv))):
                _net_call(net, method, a, desc + " (after an error)", ["x"], True, True, set(), set(),
                          False)


@prop(150)
def prop_network_layouts_and_aliases(data):
    """No mutations: every memory layout and real dtype of x, and x that *is* one of the
    network's own arrays (cached layer inputs, activations, params, the arrays gradient
    returned), through every method. Square sizes, so those arrays fit as x."""
    k = data.draw(st.integers(1, 3), label="size")
    dtype = data.draw(st.sampled_from([np.float64, np.float32]), label="dtype")
    layers = data.draw(st.integers(0, 2), label="hidden layers")
    kw = dict(activation=data.draw(st.sampled_from(["relu", "sigmoid", "tanh", "identity"])), dtype=dtype,
              seed=data.draw(st.integers(0, 50)), weight_decay_lambda=data.draw(st.sampled_from([0, 0.1])),
              loss=data.draw(st.sampled_from(["cross_entropy", "mse"])))
    net = fastmlp.MultiLayerNet(k, [k] * layers, k, **kw)
    desc = f"MultiLayerNet({k}, {[k] * layers}, {k}, {kw})"
    note(desc)
    H.trace("net", desc)
    n = data.draw(st.integers(1, 3), label="N")
    warm_x = np.linspace(-1, 1, n * k).reshape(n, k)
    warm_t = np.linspace(0, 1, n * k).reshape(n, k) if kw["loss"] == "mse" else np.arange(n) % k
    LAST_GRADS[id(net)] = net.gradient(warm_x, warm_t)
    for step in range(data.draw(st.integers(1, 4), label="steps")):
        method = data.draw(st.sampled_from(["predict", "loss", "accuracy", "gradient", "train_step",
                                            "train_step", "numerical_gradient"]), label="method")
        if method == "accuracy" and kw["loss"] == "mse":
            method = "predict"
        if data.draw(st.booleans(), label="own array as x"):
            pool = [getattr(layer, a) for layer in net.layers.values() for a in ("x", "out", "W", "dW")
                    if isinstance(getattr(layer, a, None), np.ndarray)]
            pool += [net.last_layer.y] + list(LAST_GRADS.get(id(net), {}).values()) + list(net.params.values())
            pool = [a for a in pool if isinstance(a, np.ndarray) and a.ndim == 2 and a.shape[1] == k]
            x = pool[data.draw(st.integers(0, len(pool) - 1), label="which array")]
        else:
            x = data.draw(H.arrays((data.draw(st.integers(1, 3), label="rows"), k), dtypes=H.REAL_DTYPES,
                                   layouts=H.LAYOUTS[1:], kinds=["ints", "moderate"]), label="x")
        rows = x.shape[0]
        t = (data.draw(H.arrays((rows, k), dtypes=["f8", "f4"], kinds=["moderate"]), label="t")
             if kw["loss"] == "mse" else np.arange(rows) % k)
        args = (x,) if method == "predict" else (x, t)
        opt_spec = None
        if method == "train_step":
            opt_name = data.draw(st.sampled_from(["SGD", "SGD", "Momentum", "Adam"]), label="optimizer")
            opt_spec = (opt_name, OPT_CLASSES[opt_name])
        _net_call(net, method, args, desc, ["x", "t"], True, True, set(), set(), False, opt_spec)


def _net_save(net, x, names, benign, relink_params, relink_layers):
    """save sees the params the network computes with: load gives them back bit for bit, and
    the loaded network predicts what the reference twin predicts."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "net.fmlp")
        before = H.snapshot(net.params)
        H.trace("net save", H.describe(net.params))
        got = H.outcome(lambda: fastmlp.save(net, path))
        assert H.snapshot(net.params) == before, "save changed params"
        if isinstance(got, H.Raised):
            if benign:
                raise AssertionError(f"save raised {got.exc!r} for a valid network")
            H.check_clear_error(got.exc, names + ["params", "model", "dtype"] + list(net.params), "save")
            return
        loaded = H.outcome(lambda: fastmlp.load(path))
        if isinstance(loaded, H.Raised):
            raise AssertionError(f"load of a file save wrote raised {loaded.exc!r}")
        if relink_layers or not benign:
            return
        H.assert_match(H.clone(loaded.params), H.clone(net.params), "load(save(net)).params", exact=True)
        xv = np.linspace(-1, 1, 3 * net.input_size).reshape(3, net.input_size)
        want = net_twin(net, relink_params, set()).predict(xv)
        H.assert_match(loaded.predict(xv), want, "load(save(net)).predict")


# ============================================================================ load

_SAVED = {}


def _saved_net_bytes():
    if "bytes" not in _SAVED:
        net = fastmlp.MultiLayerNet(3, [4], 2, dtype=np.float32, seed=1)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "net.fmlp")
            fastmlp.save(net, path)
            with open(path, "rb") as f:
                _SAVED["bytes"] = f.read()
        _SAVED["net"] = net
    return _SAVED["bytes"], _SAVED["net"]


@prop(100)
def prop_load_mutated_file(data):
    blob, net = _saved_net_bytes()
    b = bytearray(blob)
    how = data.draw(st.sampled_from(["flip", "flip", "truncate", "append", "cut"]), label="mutation")
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 3), label="bytes")):
            i = data.draw(st.integers(0, len(b) - 1), label="offset")
            b[i] = data.draw(st.integers(0, 255).filter(lambda v, o=b[i]: v != o), label="value")
    elif how == "truncate":
        b = b[:data.draw(st.integers(0, len(b) - 1), label="length")]
    elif how == "append":
        b += bytes(data.draw(st.binary(min_size=1, max_size=64), label="junk"))
    else:
        i = data.draw(st.integers(0, len(b) - 1), label="cut at")
        b = b[:i] + b[i + data.draw(st.integers(1, 64), label="cut length"):]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "mutated.fmlp")
        with open(path, "wb") as f:
            f.write(bytes(b))
        H.trace("load", how, len(b))
        got = H.outcome(lambda: fastmlp.load(path))
    note(f"load -> {H.describe(got)}")
    if isinstance(got, H.Raised):
        assert isinstance(got.exc, ValueError) and not type(got.exc).__module__.startswith(
            ("zipfile", "zlib", "json", "struct")), \
            f"load of an altered file raised {type(got.exc).__module__}.{type(got.exc).__name__}: {got.exc}"
        assert "mutated.fmlp" in str(got.exc), f"load's error does not name the file: {got.exc}"
        return
    # an alteration load accepts (a byte no check covers) must not change the model
    assert type(got) is type(net)
    H.assert_match(H.clone(got.params), H.clone(net.params), "load(altered).params", exact=True)
    xv = np.linspace(-1, 1, 6).reshape(2, 3)
    H.assert_match(got.predict(xv), net.predict(xv), "load(altered).predict", exact=True)


# ============================================================================ runner

CHILD = r"""
import os, sys, faulthandler
faulthandler.enable()
try:   # bound hypothesis' shrinking (5 minutes by default) so the suite stays bounded
    from hypothesis.internal.conjecture import engine
    engine.MAX_SHRINKING_SECONDS = float(os.environ.get("FASTMLP_PROPERTY_SHRINK_SECONDS", "15"))
except Exception:
    pass
sys.path.insert(0, {here!r})
import test_properties as T
fn, _ = T.PROPERTIES[{name!r}]
fn()
print("PROPERTY-OK", flush=True)
"""


def _run_property(name):
    if os.environ.get("FASTMLP_PROPERTY_INPROCESS") == "1":
        PROPERTIES[name][0]()
        return
    proc = subprocess.run([sys.executable, "-c", CHILD.format(here=HERE, name=name)],
                          capture_output=True, text=True, timeout=900, cwd=tempfile.gettempdir())
    if proc.returncode == 0 and "PROPERTY-OK" in proc.stdout:
        return
    calls = [ln for ln in proc.stdout.splitlines() if ln.startswith("CALL ")]
    other = [ln for ln in proc.stdout.splitlines() if not ln.startswith("CALL ")]
    crashed = proc.returncode < 0 or "Fatal Python error" in proc.stderr
    report = [f"property {name} {'CRASHED the interpreter' if crashed else 'failed'} "
              f"(return code {proc.returncode})"]
    if crashed:
        report += ["last calls before the crash:"] + calls[-8:]
    err = [ln for ln in proc.stderr.splitlines() if "RuntimeWarning" not in ln and not ln.startswith(
        ("  arr = ", "  self.", "  return ", "WARNING: Hypothesis has spent", "PLEASE REPORT"))]
    report += ["--- stdout (tail) ---"] + other[-20:] + ["--- stderr (tail) ---"] + err[-150:]
    pytest.fail(textwrap.indent("\n".join(report), "  "), pytrace=False)


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_property(name):
    _run_property(name)
