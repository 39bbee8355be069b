"""``predict`` in one compiled call (``FusedMLP.predict_ready``) when the input is ready.

The one-call path must give the bits of the checked path (``_check_x``, ``plan``,
``FusedMLP.predict``: the same kernel on the same arrays) and step aside (None) for any
input that path would convert or reject, so that ``predict`` then converts it or names
what is wrong exactly as before.
"""
import os
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import _property_helpers as H  # noqa: E402

import fastmlp  # noqa: E402
from fastmlp import _backend  # noqa: E402
from fastmlp import reference as R  # noqa: E402


def _checked(net, x):
    """The checked path's scores of x: what predict computed before the one-call path."""
    plan = net._fused.plan(net)
    assert plan is not None
    return net._fused.predict(plan, net._check_x(x, finite=False))


@settings(max_examples=40, deadline=None)
@given(widths=st.lists(st.integers(1, 37), min_size=1, max_size=3), n=st.integers(1, 23),
       c=st.integers(1, 7), dtype=st.sampled_from([np.float32, np.float64]),
       activation=st.sampled_from(["relu", "sigmoid", "tanh", "identity"]),
       loss=st.sampled_from(["cross_entropy", "mse"]), seed=st.integers(0, 2 ** 16))
def test_one_call_gives_the_checked_paths_bits(widths, n, c, dtype, activation, loss, seed):
    d = widths[0] + 3
    net = fastmlp.MultiLayerNet(d, widths, c, activation=activation, loss=loss, dtype=dtype,
                                seed=seed)
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)
    net.predict(x)   # the first call takes the checked path (it learns the layer names)
    fast = net._fused.predict_ready(net, x)
    assert fast is not None and fast.dtype == dtype and fast.shape == (n, c)
    np.testing.assert_array_equal(fast, _checked(net, x))
    np.testing.assert_array_equal(net.predict(x), fast)
    assert net.predict(x) is not fast   # a new array each call (predict is thread-safe)
    ref = R.MultiLayerNet(d, widths, c, activation=activation, loss=loss, dtype=dtype, seed=seed)
    H.assert_match(fast, ref.predict(x), "predict_ready vs fastmlp.reference")


class Sub(np.ndarray):
    """A user's ndarray subclass: not taken as it is."""


def _not_ready(x):
    """Inputs predict accepts after converting them; the one-call path must decline each."""
    swapped = x.astype(x.dtype.newbyteorder())
    unaligned = np.frombuffer(b"\0" + x.tobytes(), dtype=x.dtype, offset=1).reshape(x.shape)
    wide = np.concatenate([x, x], axis=1)
    return {"other dtype": x.astype(np.float64 if x.dtype == np.float32 else np.float32),
            "Fortran order": np.asfortranarray(x), "strided": wide[:, ::2],
            "subclass": x.view(Sub), "big-endian": swapped, "unaligned": unaligned,
            "list of lists": x.tolist(), "integers": np.rint(x).astype(np.int64)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", sorted(_not_ready(np.zeros((2, 2))).keys()))
def test_inputs_to_convert_take_the_checked_path(dtype, kind):
    net = fastmlp.MultiLayerNet(5, [4], 3, dtype=dtype, seed=1)
    x = np.random.default_rng(2).standard_normal((6, 5)).astype(dtype)
    net.predict(x)
    other = _not_ready(x)[kind]
    assert net._fused.predict_ready(net, other) is None
    converted = np.ascontiguousarray(np.asarray(other), dtype=dtype)
    np.testing.assert_array_equal(net.predict(other), _checked(net, converted))


@pytest.mark.parametrize("x, message", [
    (np.zeros((0, 5)), "must not be empty"), (np.zeros((3, 4)), "input_size=5"),
    (np.zeros(5), r"x\[None\]"), (np.zeros((2, 5), complex), "real numeric dtype")])
def test_bad_inputs_get_the_checked_paths_errors(x, message):
    net = fastmlp.MultiLayerNet(5, [4], 3, seed=1)
    net.predict(np.zeros((2, 5)))
    with pytest.raises((ValueError, TypeError), match=message):
        net.predict(x)


def test_it_steps_aside_before_the_first_plan_and_without_the_compiled_gemm(monkeypatch):
    net = fastmlp.MultiLayerNet(5, [4], 3, seed=1)
    x = np.ones((2, 5))
    assert net._fused.predict_ready(net, x) is None   # no layer names learnt yet
    net.predict(x)
    assert net._fused.predict_ready(net, x) is not None
    monkeypatch.setattr(_backend, "USE_BLAS", False)
    assert net._fused.predict_ready(net, x) is None


def test_an_edited_network_is_not_taken_in_one_call():
    """Layers edited after the names were learnt: the one-call path declines, and predict
    runs the layers that are there."""
    net = fastmlp.MultiLayerNet(5, [4, 4], 3, seed=1)
    x = np.random.default_rng(0).standard_normal((6, 5))
    net.predict(x)
    net.layers["Activation_function1"] = fastmlp.layers.Sigmoid()
    assert net._fused.predict_ready(net, x) is None
    y = x
    for layer in net.layers.values():
        y = layer.forward(y)
    np.testing.assert_array_equal(net.predict(x), y)
    net.dtype = np.float32   # a public attribute that no longer describes the arrays
    assert net._fused.predict_ready(net, x.astype(np.float32)) is None
