"""Bad input to the compiled layers and functions (SPEC "What bad input gets", TESTING.md invariants).

Each case must (i) raise ValueError or TypeError (RuntimeError for call
order) whose message names the argument, (ii) leave the layer's state
bitwise unchanged, (iii) leave the inputs bitwise unchanged, flags included,
and (iv) leave the layer working: the next valid call gives a fresh layer's
result. The nastiest cases, where native code could crash or write out of
bounds, run in a subprocess, so a segfault is a failure that names the case
and (v) anything native code writes to stderr is seen.
"""
import json
import re
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
from conftest import snapshot

from fastmlp import functions as F
from fastmlp import layers as L

N, K, M = 4, 6, 3


def _x(dtype=np.float64):
    return np.linspace(-2, 2, N * K).reshape(N, K).astype(dtype)


def _logits():
    return np.linspace(-3, 3, N * M).reshape(N, M)


LABELS = np.array([0, 2, 1, 2])


def _affine():
    W = np.linspace(-1, 1, K * M).reshape(K, M)
    return L.Affine(W, np.arange(M, dtype=np.float64))


# name -> (make a fresh layer, a valid forward call, a valid backward call)
LAYERS = {
    "Mul": (L.MulLayer, lambda c: c.forward(_x(), _x() + 1), lambda c: c.backward(np.ones((N, K)))),
    "Add": (L.AddLayer, lambda c: c.forward(_x(), _x() + 1), lambda c: c.backward(np.ones((N, K)))),
    "Relu": (L.Relu, lambda c: c.forward(_x()), lambda c: c.backward(np.ones((N, K)))),
    "Sigmoid": (L.Sigmoid, lambda c: c.forward(_x()), lambda c: c.backward(np.ones((N, K)))),
    "Affine": (_affine, lambda c: c.forward(_x()), lambda c: c.backward(np.ones((N, M)))),
    "SoftmaxWithLoss": (L.SoftmaxWithLoss, lambda c: c.forward(_logits(), LABELS), lambda c: c.backward()),
    "MSELoss": (L.MSELoss, lambda c: c.forward(_logits(), _logits() * 2), lambda c: c.backward()),
}


def _state(layer):
    """Every attribute of a layer: object identity plus bytes/flags for arrays, repr otherwise."""
    out = {}
    for k, v in vars(layer).items():
        out[k] = (id(v), snapshot(v)) if isinstance(v, np.ndarray) else (id(v), repr(v))
    return out


def _as_list(r):
    r = r if isinstance(r, tuple) else (r,)
    return [np.asarray(v) for v in r]


def _check_case(layer_name, stage, call, exc, names, inputs=()):
    """Run a failing call on a forwarded layer; check (i)-(iv)."""
    make, fwd, bwd = LAYERS[layer_name]
    layer = make()
    if stage == "backward":
        fwd(layer)
    state = _state(layer)
    before = [snapshot(a) for a in inputs]
    with pytest.raises(exc) as info:
        call(layer)
    msg = str(info.value)
    for name in names:
        assert re.search(rf"(?<!\w){re.escape(name)}(?![\w])", msg), \
            f"the message does not name {name!r}: {msg!r}"
    assert _state(layer) == state, "layer state changed by a failed call"
    assert [snapshot(a) for a in inputs] == before, "an input was modified"
    # (iv) the next valid call gives a fresh layer's result
    fresh = make()
    got_f, want_f = _as_list(fwd(layer)), _as_list(fwd(fresh))
    got_b, want_b = _as_list(bwd(layer)), _as_list(bwd(fresh))
    for g, w in zip(got_f + got_b, want_f + want_b):
        np.testing.assert_array_equal(g, w, strict=True)


# ---------------------------------------------------------------- forward: x

NOT_ARRAYS = [("str", "abc"), ("bytes", b"abc"), ("dict", {"a": 1}), ("None", None), ("set", {1, 2}),
              ("object", np.array([[1.0, None]], dtype=object)), ("complex", np.ones((N, K), complex)),
              ("string_array", np.array([["a", "b"]])), ("datetime", np.array(["2020-01-01"], "M8[D]")),
              ("big_int", [[2**100, 1]]), ("function", len)]


@pytest.mark.parametrize("layer", ["Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "MSELoss", "Mul", "Add"])
@pytest.mark.parametrize("kind,value", NOT_ARRAYS, ids=[k for k, _ in NOT_ARRAYS])
def test_forward_non_array_or_bad_dtype(layer, kind, value):
    first = "y" if layer == "MSELoss" else "x"
    calls = {
        "Relu": lambda c: c.forward(value), "Sigmoid": lambda c: c.forward(value),
        "Affine": lambda c: c.forward(value),
        "SoftmaxWithLoss": lambda c: c.forward(value, LABELS),
        "MSELoss": lambda c: c.forward(value, _logits()),
        "Mul": lambda c: c.forward(value, _x()), "Add": lambda c: c.forward(value, _x()),
    }
    _check_case(layer, "forward", calls[layer], TypeError, [first])


@pytest.mark.parametrize("layer,arg", [("SoftmaxWithLoss", "t"), ("MSELoss", "t"), ("Mul", "y"), ("Add", "y")])
@pytest.mark.parametrize("kind,value", NOT_ARRAYS, ids=[k for k, _ in NOT_ARRAYS])
def test_forward_second_argument_non_array(layer, arg, kind, value):
    calls = {
        "SoftmaxWithLoss": lambda c: c.forward(_logits(), value),
        "MSELoss": lambda c: c.forward(_logits(), value),
        "Mul": lambda c: c.forward(_x(), value), "Add": lambda c: c.forward(_x(), value),
    }
    _check_case(layer, "forward", calls[layer], TypeError, [arg])


@pytest.mark.parametrize("layer,call,arg", [
    ("Affine", lambda c: c.forward(np.ones(K)), "x"),
    ("SoftmaxWithLoss", lambda c: c.forward(np.ones(M), LABELS[:1]), "x"),
    ("MSELoss", lambda c: c.forward(np.ones(M), np.ones(M)), "y"),
], ids=["Affine", "SoftmaxWithLoss", "MSELoss"])
def test_one_dimensional_x_says_pass_x_none(layer, call, arg):
    """SPEC: a 1-D x is an error that says to pass x[None] for one sample."""
    _check_case(layer, "forward", call, ValueError, [arg, f"{arg}[None]"])


EMPTY = [("rows", np.empty((0, K))), ("cols", np.empty((N, 0))), ("1d", np.empty(0)),
         ("list", []), ("3d", np.empty((N, 0, 2)))]


@pytest.mark.parametrize("layer", ["Relu", "Sigmoid", "Affine", "SoftmaxWithLoss", "MSELoss", "Mul", "Add"])
@pytest.mark.parametrize("kind,value", EMPTY, ids=[k for k, _ in EMPTY])
def test_forward_empty(layer, kind, value):
    first = "y" if layer == "MSELoss" else "x"
    calls = {
        "Relu": lambda c: c.forward(value), "Sigmoid": lambda c: c.forward(value),
        "Affine": lambda c: c.forward(value),
        "SoftmaxWithLoss": lambda c: c.forward(value, LABELS[:0]),
        "MSELoss": lambda c: c.forward(value, value),
        "Mul": lambda c: c.forward(value, value), "Add": lambda c: c.forward(value, value),
    }
    _check_case(layer, "forward", calls[layer], ValueError, [first])


def test_affine_wrong_feature_count():
    _check_case("Affine", "forward", lambda c: c.forward(np.ones((N, K + 1))), ValueError, ["x", "W"])
    _check_case("Affine", "forward", lambda c: c.forward(np.ones((N, 2, K))), ValueError, ["x"])
    _check_case("Affine", "backward", lambda c: c.forward(np.ones((N, K - 1))), ValueError, ["x"])


@pytest.mark.parametrize("W,b,arg", [
    (np.ones(K), np.ones(M), "W"), (np.ones((K, M, 1)), np.ones(M), "W"), (np.ones((K, M)), np.ones(M + 1), "b"),
    (np.ones((K, M)), np.ones((1, M)), "b"), (np.ones((K, M), complex), np.ones(M), "W"),
    (np.ones((K, M)), "b", "b"), (None, np.ones(M), "W"), (np.empty((0, M)), np.ones(M), "W"),
    (np.ones((K, M)), np.ones(M, complex), "b"),
], ids=["W1d", "W3d", "b_len", "b2d", "Wcomplex", "bstr", "WNone", "Wempty", "bcomplex"])
def test_affine_constructor(W, b, arg):
    with pytest.raises((TypeError, ValueError), match=rf"(?<!\w){arg}(?!\w)"):
        L.Affine(W, b)


def test_mul_add_unbroadcastable_shapes():
    for layer in ("Mul", "Add"):
        _check_case(layer, "backward", lambda c: c.forward(np.ones((N, K)), np.ones(K + 1)), ValueError,
                    ["x", "y"])


# ---------------------------------------------------------------- targets

BAD_TARGETS = [
    ("batch_short", LABELS[:-1], ValueError), ("batch_long", np.r_[LABELS, 0], ValueError),
    ("negative", np.array([0, -1, 1, 2]), ValueError), ("equal_C", np.array([0, M, 1, 2]), ValueError),
    ("huge", np.array([0, 2**62, 1, 2]), ValueError), ("uint64_max", np.array([0, 2**64 - 1, 1, 2], np.uint64), ValueError),
    ("int8_negative", np.array([0, -128, 1, 2], np.int8), ValueError),
    ("fractional", np.array([0, 0.5, 1, 2]), ValueError), ("nan", np.array([0, np.nan, 1, 2]), ValueError),
    ("inf", np.array([0, np.inf, 1, 2]), ValueError), ("float_huge", np.array([0, 1e300, 1, 2]), ValueError),
    ("bool", np.array([True, False, True, False]), TypeError),
    ("onehot_narrow", np.eye(M - 1)[[0, 1, 0, 1]], ValueError),
    ("onehot_wide", np.eye(M + 1)[[0, 1, 0, 1]], ValueError),
    ("onehot_rows", np.eye(M)[[0, 1, 2]], ValueError), ("onehot_nan", np.where(np.eye(M)[LABELS] > 0, np.nan, 0),
                                                         ValueError),
    ("onehot_inf", np.where(np.eye(M)[LABELS] > 0, np.inf, 0), ValueError),
    ("scalar", np.int64(1), ValueError), ("3d", np.zeros((N, M, 1)), ValueError),
    ("complex", LABELS.astype(complex), TypeError), ("object", LABELS.astype(object), TypeError),
]


@pytest.mark.parametrize("kind,t,exc", BAD_TARGETS, ids=[k for k, _, _ in BAD_TARGETS])
def test_softmax_with_loss_bad_targets(kind, t, exc):
    _check_case("SoftmaxWithLoss", "backward", lambda c: c.forward(_logits(), t), exc, ["t"], inputs=[t])


def test_mse_loss_bad_targets():
    _check_case("MSELoss", "backward", lambda c: c.forward(_logits(), _logits()[:-1]), ValueError, ["y", "t"])
    _check_case("MSELoss", "backward", lambda c: c.forward(_logits(), _logits().T), ValueError, ["y", "t"])
    _check_case("MSELoss", "backward", lambda c: c.forward(_logits(), np.ones(M, complex)), TypeError, ["t"])


# ---------------------------------------------------------------- backward

@pytest.mark.parametrize("layer", list(LAYERS))
def test_backward_before_forward(layer):
    make, _, bwd = LAYERS[layer]
    _check_case(layer, "fresh", bwd, RuntimeError, ["forward"])


WRONG_DOUT = [("fewer_rows", np.ones((N - 1, K))), ("transposed", np.ones((K, N))), ("flat", np.ones(N * K)),
              ("3d", np.ones((N, K, 1)))]
# A dout that broadcasts to the output (a row, a scalar) is what the book's x * y
# allows for Mul and Add; only Relu and Sigmoid must reject it.
BROADCASTING_DOUT = [("row", np.ones(K)), ("scalar", 1.0)]


@pytest.mark.parametrize("layer", ["Mul", "Add", "Relu", "Sigmoid"])
@pytest.mark.parametrize("kind,dout", WRONG_DOUT, ids=[k for k, _ in WRONG_DOUT])
def test_backward_wrong_dout_shape(layer, kind, dout):
    _check_case(layer, "backward", lambda c: c.backward(dout), ValueError, ["dout"], inputs=[np.asarray(dout)])


@pytest.mark.parametrize("layer", ["Relu", "Sigmoid"])
@pytest.mark.parametrize("kind,dout", BROADCASTING_DOUT, ids=[k for k, _ in BROADCASTING_DOUT])
def test_activation_backward_broadcasting_dout(layer, kind, dout):
    _check_case(layer, "backward", lambda c: c.backward(dout), ValueError, ["dout"], inputs=[np.asarray(dout)])


@pytest.mark.parametrize("kind,dout", [("rows", np.ones((N - 1, M))), ("cols", np.ones((N, M + 1))),
                                       ("flat", np.ones(N * M)), ("scalar", 1.0)])
def test_affine_backward_wrong_dout_shape(kind, dout):
    _check_case("Affine", "backward", lambda c: c.backward(dout), ValueError, ["dout"])


BAD_DOUT = [("str", "a", TypeError), ("None", None, TypeError), ("complex", np.ones((N, K), complex), TypeError),
            ("object", np.ones((N, K), object), TypeError), ("dict", {}, TypeError)]


@pytest.mark.parametrize("layer", ["Mul", "Add", "Relu", "Sigmoid"])
@pytest.mark.parametrize("kind,dout,exc", BAD_DOUT, ids=[k for k, _, _ in BAD_DOUT])
def test_backward_bad_dout(layer, kind, dout, exc):
    _check_case(layer, "backward", lambda c: c.backward(dout), exc, ["dout"])


@pytest.mark.parametrize("layer", ["SoftmaxWithLoss", "MSELoss"])
@pytest.mark.parametrize("kind,dout,exc", [("str", "a", TypeError), ("None", None, TypeError),
                                           ("array", np.ones(3), TypeError), ("nan", float("nan"), ValueError),
                                           ("inf", float("inf"), ValueError), ("complex", 1j, TypeError),
                                           ("bool", True, TypeError)])
def test_loss_backward_bad_dout(layer, kind, dout, exc):
    _check_case(layer, "backward", lambda c: c.backward(dout), exc, ["dout"])


# ---------------------------------------------------------------- functions

@pytest.mark.parametrize("call,exc,names", [
    (lambda: F.sigmoid("abc"), TypeError, ["x"]), (lambda: F.relu(None), TypeError, ["x"]),
    (lambda: F.relu(np.ones(3, complex)), TypeError, ["x"]), (lambda: F.sigmoid(np.empty((0, 2))), ValueError, ["x"]),
    (lambda: F.relu([[1, 2], [3]]), ValueError, ["x"]), (lambda: F.softmax(np.ones((2, 2, 2))), ValueError, ["x"]),
    (lambda: F.softmax({}), TypeError, ["x"]), (lambda: F.softmax(np.empty((2, 0))), ValueError, ["x"]),
    (lambda: F.cross_entropy_error(np.full((N, M), 1 / M), np.array([0, 1, 2, 3])), ValueError, ["t"]),
    (lambda: F.cross_entropy_error(np.full((N, M), 1 / M), LABELS[:-1]), ValueError, ["t"]),
    (lambda: F.cross_entropy_error(np.full((N, M), 1 / M), np.eye(M + 1)[:N]), ValueError, ["t"]),
    (lambda: F.cross_entropy_error(np.full(M, 1 / M), [0, 1]), ValueError, ["t"]),
    (lambda: F.cross_entropy_error(np.full((2, 2, 2), 0.5), [0, 1]), ValueError, ["y"]),
    (lambda: F.cross_entropy_error("y", [0]), TypeError, ["y"]),
    (lambda: F.cross_entropy_error(np.full((N, M), 1 / M), None), TypeError, ["t"]),
    (lambda: F.mean_squared_error(np.ones(3), np.ones(4)), ValueError, ["y", "t"]),
    (lambda: F.mean_squared_error(np.ones(3), "abc"), TypeError, ["t"]),
    (lambda: F.mean_squared_error(np.empty(0), np.empty(0)), ValueError, ["y"]),
], ids=["sigmoid_str", "relu_None", "relu_complex", "sigmoid_empty", "relu_ragged", "softmax_3d",
        "softmax_dict", "softmax_empty", "ce_label_range", "ce_batch", "ce_onehot_width", "ce_1d_y_2_labels",
        "ce_3d", "ce_str", "ce_None", "mse_shape", "mse_str", "mse_empty"])
def test_functions_bad_input(call, exc, names):
    with pytest.raises(exc) as info:
        call()
    for name in names:
        assert re.search(rf"(?<!\w){re.escape(name)}(?!\w)", str(info.value)), \
            f"the message does not name {name!r}: {str(info.value)!r}"


# ---------------------------------------------------------------- in a subprocess: no crash, no stderr

# Each case returns None when all is well, or a string saying what went wrong. A
# case that crashes the interpreter is found from the last "START" line.
NASTY = r'''
import json, sys
import numpy as np
from fastmlp import layers as L, functions as F

def expect_error(fn, names, types=(TypeError, ValueError)):
    try:
        fn()
    except types as e:
        missing = [n for n in names if n not in str(e)]
        return f"message does not name {missing}: {e!r}" if missing else None
    except Exception as e:
        return f"wrong exception {e!r}"
    return "no error raised"

def labels_mutated_after_forward(value):
    x, t = np.zeros((2, 3)), np.array([0, 1], np.intp)
    layer = L.SoftmaxWithLoss()
    layer.forward(x, t)
    want = (np.full((2, 3), 1 / 3) - np.eye(3)[[0, 1]]) / 2
    t[0] = value                    # the caller reuses its label buffer
    try:
        got = layer.backward()
    except (ValueError, RuntimeError):
        return None                 # a clean error is acceptable
    if not np.allclose(got, want):
        return "backward used labels changed after forward"
    return None

def affine_b_replaced_short():
    layer = L.Affine(np.ones((3, 1000)), np.zeros(1000))
    layer.b = np.zeros(1)           # b no longer matches W
    return expect_error(lambda: layer.forward(np.ones((2, 3))), ["b"])

def affine_W_replaced_fewer_rows():
    layer = L.Affine(np.ones((1000, 50)), np.zeros(50))
    layer.forward(np.ones((64, 1000)))
    layer.W = np.ones((2, 50))      # W swapped between forward and backward
    return expect_error(lambda: layer.backward(np.ones((64, 50))), ["W"])

def cached_replaced(make, forward, attribute, value, names, backward_arg=None):
    """Replace a layer's cached attribute between forward and backward: a clear error
    naming it (or the result of the attribute's new value, never a crash)."""
    layer = make()
    forward(layer)
    setattr(layer, attribute, value)
    call = (lambda: layer.backward()) if backward_arg is None else (lambda: layer.backward(backward_arg))
    return expect_error(call, names, (TypeError, ValueError, RuntimeError))

X5 = np.linspace(-1, 1, 15).reshape(5, 3)
T5 = np.array([0, 1, 2, 0, 1])

def smwl():
    return L.SoftmaxWithLoss()

CASES = {
    "softmax_t_out_of_range": lambda: cached_replaced(
        smwl, lambda l: l.forward(X5, T5), "t", np.full(5, 10**9), ["SoftmaxWithLoss.t"]),
    "softmax_t_negative": lambda: cached_replaced(
        smwl, lambda l: l.forward(X5, T5), "t", np.full(5, -3), ["SoftmaxWithLoss.t"]),
    "softmax_t_fewer_labels": lambda: cached_replaced(
        smwl, lambda l: l.forward(X5, T5), "t", np.array([0]), ["SoftmaxWithLoss.t"]),
    "softmax_t_onehot_narrow": lambda: cached_replaced(
        smwl, lambda l: l.forward(X5, T5), "t", np.ones((5, 1)), ["SoftmaxWithLoss.t"]),
    "softmax_t_text": lambda: cached_replaced(
        smwl, lambda l: l.forward(X5, T5), "t", "abc", ["SoftmaxWithLoss.t"]),
    "softmax_y_shorter": lambda: cached_replaced(
        smwl, lambda l: l.forward(X5, T5), "y", np.ones((1, 3)), ["t"]),
    "softmax_y_1d": lambda: cached_replaced(
        smwl, lambda l: l.forward(X5, T5), "y", np.ones(3), ["SoftmaxWithLoss.y"]),
    "mul_y_shorter": lambda: cached_replaced(
        L.MulLayer, lambda l: l.forward(np.ones(1000), np.ones(1000)), "y", np.ones(2),
        ["MulLayer.y"], np.ones(1000)),
    "mul_x_list": lambda: cached_replaced(
        L.MulLayer, lambda l: l.forward(np.ones(4), np.ones(4)), "x", object(),
        ["MulLayer.x"], np.ones(4)),
    "mse_t_shorter": lambda: cached_replaced(
        L.MSELoss, lambda l: l.forward(np.ones((1000, 3)), np.ones((1000, 3))), "t",
        np.ones((1, 3)), ["MSELoss.t"]),
    "relu_mask_shorter_float": lambda: cached_replaced(
        L.Relu, lambda l: l.forward(np.ones(1000)), "mask", np.ones(3), ["Relu.mask"],
        np.ones(1000)),
    "relu_mask_list": lambda: cached_replaced(
        L.Relu, lambda l: l.forward(np.ones(4)), "mask", [True] * 4, ["Relu.mask"], np.ones(4)),
    "sigmoid_out_shorter": lambda: cached_replaced(
        L.Sigmoid, lambda l: l.forward(np.ones(1000)), "out", np.ones(2), ["dout"],
        np.ones(1000)),
    "affine_x_replaced_short": lambda: cached_replaced(
        lambda: L.Affine(np.ones((3, 4)), np.zeros(4)), lambda l: l.forward(np.ones((1000, 3))),
        "x", np.ones((2, 3)), ["Affine.x"], np.ones((1000, 4))),
    "affine_original_shape_bogus": lambda: cached_replaced(
        lambda: L.Affine(np.ones((3, 4)), np.zeros(4)), lambda l: l.forward(np.ones((5, 3))),
        "original_x_shape", (10**9, 3), ["original_x_shape"], np.ones((5, 4))),
    "add_shape_bogus": lambda: cached_replaced(
        L.AddLayer, lambda l: l.forward(np.ones(3), np.ones(3)), "dtype", "text",
        ["AddLayer.dtype"], np.ones(3)),
    "labels_mutated_negative": lambda: labels_mutated_after_forward(-10**12),
    "labels_mutated_huge": lambda: labels_mutated_after_forward(10**12),
    "affine_b_replaced_short": affine_b_replaced_short,
    "affine_W_replaced_fewer_rows": affine_W_replaced_fewer_rows,
    "labels_uint64_max": lambda: expect_error(
        lambda: L.SoftmaxWithLoss().forward(np.zeros((2, 3)), np.array([0, 2**64 - 1], np.uint64)), ["t"]),
    "labels_int_min": lambda: expect_error(
        lambda: L.SoftmaxWithLoss().forward(np.zeros((2, 3)), np.array([0, -2**63])), ["t"]),
    "labels_float_huge": lambda: expect_error(
        lambda: L.SoftmaxWithLoss().forward(np.zeros((2, 3)), np.array([0, 1e300])), ["t"]),
    "ce_labels_huge": lambda: expect_error(
        lambda: F.cross_entropy_error(np.full((2, 3), 1 / 3), np.array([0, 2**62])), ["t"]),
    "onehot_wrong_width": lambda: expect_error(
        lambda: L.SoftmaxWithLoss().forward(np.zeros((2, 3)), np.eye(7)[:2]), ["t"]),
    "affine_x_few_features": lambda: expect_error(
        lambda: L.Affine(np.ones((1000, 3)), np.zeros(3)).forward(np.ones((2, 1))), ["x"]),
    "affine_dout_wrong": lambda: (lambda a: (a.forward(np.ones((2, 5))),
                                             expect_error(lambda: a.backward(np.ones((1000, 1000))), ["dout"]))[1])(
        L.Affine(np.ones((5, 3)), np.zeros(3))),
    "relu_dout_wrong": lambda: (lambda r: (r.forward(np.ones((2, 5))),
                                           expect_error(lambda: r.backward(np.ones((10**6,))), ["dout"]))[1])(L.Relu()),
    "mul_dout_wrong": lambda: (lambda m: (m.forward(np.ones((2, 5)), np.ones((2, 5))),
                                          expect_error(lambda: m.backward(np.ones(10**6)), ["dout"]))[1])(L.MulLayer()),
    "mse_t_short": lambda: expect_error(lambda: L.MSELoss().forward(np.ones((1000, 3)), np.ones((1, 3))), ["t"]),
    "softmax_3d": lambda: expect_error(lambda: F.softmax(np.ones((2, 3, 4))), ["x"]),
    "x_zero_size": lambda: expect_error(lambda: L.Relu().forward(np.ones((10**6, 0))), ["x"]),
}

names = sys.argv[1:] or list(CASES)
for name in names:
    print("START", name, flush=True)
    try:
        problem = CASES[name]()
    except Exception as e:
        problem = f"unexpected {e!r}"
    print("RESULT", json.dumps([name, problem]), flush=True)
'''


def _run_nasty(names):
    # The installed fastmlp, run from a neutral directory (not the source tree).
    return subprocess.run([sys.executable, "-c", NASTY, *names], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=120)


def test_nastiest_cases_in_a_subprocess():
    case_names = re.findall(r'^    "(\w+)": ', NASTY, flags=re.M)
    assert len(case_names) >= 15
    problems, remaining = {}, list(case_names)
    while remaining:
        proc = _run_nasty(remaining)
        done = []
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                name, problem = json.loads(line[len("RESULT "):])
                done.append(name)
                if problem:
                    problems[name] = problem
        if proc.stderr.strip():
            problems.setdefault("stderr", "")
            problems["stderr"] += proc.stderr.strip()[-2000:]
        if proc.returncode != 0:
            started = [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("START ")]
            crashed = started[-1] if started else "?"
            problems[crashed] = f"crashed the interpreter (return code {proc.returncode})"
            done.append(crashed)
        remaining = [n for n in remaining if n not in done]
        if proc.returncode == 0:
            break
    assert not problems, "\n" + textwrap.indent(json.dumps(problems, indent=1), "  ")
