"""The compiled networks (one fused call per step) against the numpy reference networks."""
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp import reference as R
from fastmlp.gradient import gradient_check

U = {np.float32: float(np.finfo(np.float32).eps) / 2, np.float64: float(np.finfo(np.float64).eps) / 2}
CASES = [dict(activation="relu"), dict(activation="sigmoid"),
         dict(activation="relu", weight_decay_lambda=0.1),
         dict(activation="sigmoid", weight_decay_lambda=0.05, loss="mse"),
         dict(activation="tanh", weight_init_std="tanh"), dict(activation="identity"),
         dict(activation="tanh", weight_decay_lambda=0.05, loss="mse")]


def _pair(dtype, sizes=(9, [7, 6], 4), **kw):
    return (fastmlp.MultiLayerNet(*sizes, dtype=dtype, seed=3, **kw),
            R.MultiLayerNet(*sizes, dtype=dtype, seed=3, **kw))


def _batch(rng, n, kw, onehot=False):
    x = rng.standard_normal((n, 9))
    if kw.get("loss") == "mse":
        return x, rng.standard_normal((n, 4))
    t = rng.integers(0, 4, n)
    return x, (np.eye(4)[t] if onehot else t)


def _close(got, want, dtype, scale=1.0):
    np.testing.assert_allclose(got, want, rtol=2000 * U[dtype], atol=2000 * U[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("n", [1, 3, 17, 100])
def test_gradient_loss_predict_match_reference(dtype, kw, n):
    rng = np.random.default_rng(n)
    net, ref = _pair(dtype, **kw)
    for onehot in (False, True):
        x, t = _batch(rng, n, kw, onehot)
        got, want = net.gradient(x, t), ref.gradient(x, t)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].dtype == dtype and got[key].shape == want[key].shape
            _close(got[key], want[key], dtype, np.abs(want[key]).max())
        assert net.last_loss == pytest.approx(ref.loss(x, t), rel=200 * U[dtype])
        _close(net.predict(x), ref.predict(x), dtype, np.abs(ref.predict(x)).max())
        if kw.get("loss") != "mse":
            assert net.accuracy(x, t) == ref.accuracy(x, t)
        # the book's attributes point at what the step computed
        assert np.array_equal(net.layers["Affine1"].dW, got["W1"])
        assert net.lastLayer.loss == pytest.approx(ref.lastLayer.loss, rel=200 * U[dtype])


@pytest.mark.parametrize("kw", CASES)
def test_compiled_network_gradient_check(kw):
    rng = np.random.default_rng(0)
    net = fastmlp.MultiLayerNet(9, [7, 6], 4, seed=5, **kw)
    for key in ("b1", "b2", "b3"):   # zero biases put whole rows exactly on ReLU's kink
        net.params[key][...] = rng.uniform(0.05, 0.2, net.params[key].shape)
    x, t = _batch(rng, 5, kw)
    numeric = net.numerical_gradient(x, t)
    for key, grad in net.gradient(x, t).items():   # TESTING.md's per-element float64 bound
        assert np.all(np.abs(grad - numeric[key]) <= 1e-8 + 1e-5 * np.abs(numeric[key])), key
    assert set(gradient_check(net, x, t)) == set(net.params)


def test_two_layer_net_gradient_check_float32_against_float64_reference():
    """Cross-precision check (TESTING.md): f32 backprop vs f64 numerical gradient of the reference."""
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((6, 9)), rng.integers(0, 4, 6)
    net = fastmlp.TwoLayerNet(9, 8, 4, weight_init_std=0.5, dtype=np.float32, seed=2)
    ref = R.TwoLayerNet(9, 8, 4, weight_init_std=0.5, seed=2)
    for key in ref.params:
        ref.params[key][...] = net.params[key]
    numeric = ref.numerical_gradient(x, t)
    for key, grad in net.gradient(x, t).items():
        scale = np.abs(numeric[key]).max()
        assert np.all(np.abs(grad - numeric[key]) <= 1e-5 * scale + 1e-3 * np.abs(numeric[key])), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hundred_sgd_steps_track_the_reference(dtype):
    rng = np.random.default_rng(7)
    net, ref = _pair(dtype, activation="relu")
    opt, ref_opt = fastmlp.optimizers.SGD(lr=0.01), R.SGD(lr=0.01)
    losses, ref_losses = [], []
    for _ in range(100):
        x, t = _batch(rng, 16, {})
        losses.append(net.train_step(x, t, opt))
        ref_losses.append(ref.loss(x, t))
        ref_opt.update(ref.params, ref.gradient(x, t))
    if dtype == np.float64:
        for key in ref.params:
            np.testing.assert_allclose(net.params[key], ref.params[key], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-3 if dtype == np.float32 else 1e-8)


@pytest.mark.parametrize("optimizer", ["SGD", "Momentum", "Adam"])
@pytest.mark.parametrize("kw", CASES)
def test_train_step_equals_gradient_then_update(optimizer, kw):
    rng = np.random.default_rng(2)
    a, _ = _pair(np.float64, **kw)
    b, _ = _pair(np.float64, **kw)
    opt_a = getattr(fastmlp.optimizers, optimizer)(lr=0.05)
    opt_b = getattr(fastmlp.optimizers, optimizer)(lr=0.05)
    for _ in range(10):
        x, t = _batch(rng, 8, kw)
        loss = a.train_step(x, t, opt_a)
        grads = b.gradient(x, t)
        assert loss == pytest.approx(b.last_loss, rel=1e-12)
        opt_b.update(b.params, grads)
    for key in a.params:
        np.testing.assert_allclose(a.params[key], b.params[key], rtol=1e-12, atol=1e-14)


def test_train_step_with_non_finite_loss_changes_nothing():
    net = fastmlp.MultiLayerNet(9, [7], 4, seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    x = np.full((3, 9), 1e308)
    loss = net.train_step(x, [0, 1, 2], fastmlp.optimizers.SGD(lr=0.1))
    assert not np.isfinite(loss)
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        net.train_step(x, [0, 1, 2], fastmlp.optimizers.SGD(lr=0.1))
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]),
       activation=st.sampled_from(["relu", "sigmoid", "tanh", "identity"]),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]), row=st.integers(0, 4),
       col=st.integers(0, 8))
def test_a_non_finite_x_is_refused_even_where_the_loss_stays_finite(dtype, activation, bad,
                                                                   row, col):
    """The compiled step finds NaN/inf in x from the first product (O(N), not a scan of x):
    with W1's row of that feature positive, a ReLU sends -inf to 0 and the loss stays finite
    while dW1 is NaN; the step must still refuse x and leave every parameter as it was."""
    net = fastmlp.MultiLayerNet(9, [7, 6], 4, activation=activation, dtype=dtype, seed=1)
    net.params["W1"][col] = np.abs(net.params["W1"][col]) + 0.1
    before = {k: v.copy() for k, v in net.params.items()}
    x = np.random.default_rng(row).standard_normal((5, 9)).astype(dtype)
    x[row, col] = bad
    t = [0, 1, 2, 3, 0]
    with pytest.raises(ValueError, match="x contains NaN"):
        net.train_step(x, t, fastmlp.optimizers.SGD(lr=0.1))
    with pytest.raises(ValueError, match="x contains NaN"):
        net.gradient(x, t)
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])


def test_non_finite_weights_are_not_taken_for_a_non_finite_x():
    """A NaN in W1's first column makes the whole first column of x @ W1 NaN: the kernel
    then scans x itself, finds it finite, and runs the step (its loss is NaN, as the
    reference's, and the non-finite loss changes nothing)."""
    net = fastmlp.MultiLayerNet(9, [7], 4, seed=0)
    net.params["W1"][3, 0] = np.nan
    before = {k: v.copy() for k, v in net.params.items()}
    x = np.random.default_rng(0).standard_normal((5, 9))
    t = [0, 1, 2, 3, 0]
    ref = R.MultiLayerNet(9, [7], 4)
    for key in before:
        ref.params[key][...] = before[key]
    assert np.isnan(ref.loss(x, t))
    assert np.isnan(net.train_step(x, t, fastmlp.optimizers.SGD(lr=0.1)))
    for key in before:
        np.testing.assert_array_equal(net.params[key], before[key])


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_integer_sample_weights_equal_repeated_rows(loss):
    rng = np.random.default_rng(4)
    kw = {"loss": loss}
    net, _ = _pair(np.float64, **kw)
    x, t = _batch(rng, 5, kw)
    w = np.array([1, 3, 0, 2, 1])     # sums to 7: as the 7 repeated rows, with N = 7
    weighted = {k: v.copy() for k, v in net.gradient(x, t, sample_weight=w * 5 / 7).items()}
    repeated = net.gradient(np.repeat(x, w, axis=0), np.repeat(t, w, axis=0))
    for key in repeated:
        np.testing.assert_allclose(weighted[key], repeated[key], rtol=1e-12, atol=1e-15)


def test_replaced_layer_weights_of_wrong_shape_are_refused():
    net = fastmlp.MultiLayerNet(9, [7], 4, seed=0)
    net.layers["Affine1"].W = np.zeros((3, 7))
    with pytest.raises(ValueError, match="W expects 3"):
        net.gradient(np.ones((2, 9)), [0, 1])


def test_gradient_buffers_are_reused_and_inputs_untouched():
    rng = np.random.default_rng(0)
    net = fastmlp.MultiLayerNet(9, [7], 4, seed=0)
    x, t = _batch(rng, 6, {})
    x.flags.writeable = False
    t_before = t.copy()
    first = net.gradient(x, t)
    second = net.gradient(x, t)
    assert all(first[k] is second[k] for k in first)   # documented: the step's buffers
    np.testing.assert_array_equal(t, t_before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_masks_and_nan_propagation_match_reference(dtype):
    rng = np.random.default_rng(4)
    net, ref = _pair(dtype)
    x, t = _batch(rng, 17, {})
    net.gradient(x, t)
    ref.gradient(x, t)
    for name in ("Activation_function1", "Activation_function2"):
        np.testing.assert_array_equal(net.layers[name].mask, ref.layers[name].mask)
    # ReLU keeps NaN as the reference's does (mask = x <= 0 is False for NaN)
    for model in (net, ref):
        model.params["W1"][0, 0] = np.nan
    np.testing.assert_array_equal(np.isnan(net.predict(x)), np.isnan(ref.predict(x)))
    assert np.isnan(net.predict(x)).all()


def test_label_dtypes_and_layouts_give_the_same_step():
    """int64 and int32 labels (checked in C), strided, unsigned, float and list labels
    (checked in Python) all give the same gradient bits; a bad label is refused by name."""
    rng = np.random.default_rng(6)
    net = fastmlp.MultiLayerNet(9, [7], 4, seed=0)
    x, t = _batch(rng, 11, {})
    want = {k: v.copy() for k, v in net.gradient(x, t.astype(np.int64)).items()}
    strided = np.repeat(t, 2)[::2]
    for labels in (t.astype(np.int32), strided, t.astype(np.uint8), t.astype(np.float64),
                   t.tolist(), t.astype(">i8")):
        got = net.gradient(x, labels)
        for k in want:
            assert np.array_equal(got[k], want[k]), (type(labels), k)
    for bad in (np.array([0] * 10 + [4]), np.array([0] * 10 + [-1], np.int32)):
        with pytest.raises(ValueError, match=r"t labels must lie in \[0, 4\)"):
            net.gradient(x, bad)


@settings(max_examples=40, deadline=None)
@given(widths=st.lists(st.sampled_from([1, 3, 16, 17, 33, 64, 100, 1023]), min_size=1, max_size=2),
       n=st.sampled_from([1, 3, 17]), dtype=st.sampled_from([np.float32, np.float64]),
       activation=st.sampled_from(["relu", "sigmoid", "tanh", "identity"]),
       seed=st.integers(0, 2**16))
def test_fused_passes_at_vector_widths_match_reference(widths, n, dtype, activation, seed):
    """Hidden widths below, at and past the SIMD widths (4-16 lanes) and their remainders:
    the fused bias/activation/mask, column-sum and ReLU-backward passes against the reference."""
    sizes = (9, widths, 5)
    net = fastmlp.MultiLayerNet(*sizes, activation=activation, dtype=dtype, seed=seed)
    ref = R.MultiLayerNet(*sizes, activation=activation, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    for key in net.params:   # non-zero biases, so the bias add is exercised
        net.params[key][...] = ref.params[key] + rng.uniform(-0.1, 0.1, ref.params[key].shape)
        ref.params[key][...] = net.params[key]
    x, t = rng.standard_normal((n, 9)), rng.integers(0, 5, n)
    got, want = net.gradient(x, t), ref.gradient(x, t)
    for key in want:
        _close(got[key], want[key], dtype, np.abs(want[key]).max())
    _close(net.predict(x), ref.predict(x), dtype, np.abs(ref.predict(x)).max())
    if activation == "relu":   # each mask marks exactly the zeros of its layer's output
        # (not compared with the reference's: a pre-activation within rounding of 0 may flip)
        for i in range(1, len(widths) + 1):
            out = net.layers[f"Affine{i + 1}"].x
            np.testing.assert_array_equal(net.layers[f"Activation_function{i}"].mask, out == 0)


# ---------------------------------------------------------------- state changed between calls
# Each network runs in a subprocess, so a crash is a failure that names the case.

_MUTATION_SCRIPT = """
import numpy as np, fastmlp, fastmlp.reference as ref
rng = np.random.default_rng(0)
x, t = rng.standard_normal((5, 4)), np.array([0, 1, 2, 0, 1])
nets = []
for module in (fastmlp, ref):
    net = module.MultiLayerNet(4, [6], 3, activation=ACTIVATION, seed=0)
    net.gradient(x, t)
    nets.append(net)
for net in nets:
    MUTATE
results = []
for net in nets:
    try:
        g = net.gradient(x, t)
        results.append((net.predict(x), {k: v.copy() for k, v in g.items()}))
    except Exception as exc:   # the reference's own errors are less careful
        results.append(type(exc).__name__ + ": " + str(exc))
got, want = results
if isinstance(got, str):   # a clear error is always allowed; a wrong result never
    assert got.startswith(("TypeError", "ValueError")), got
    print("raised", got)
else:
    assert not isinstance(want, str), ("the reference raised, the compiled net computed", want)
    rtol = 1e-4 if got[0].dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got[0], want[0], rtol=rtol, atol=rtol)
    assert got[1].keys() == want[1].keys()
    for k in want[1]:
        np.testing.assert_allclose(got[1][k], want[1][k], rtol=rtol, atol=rtol)
    print("same")
"""

_WIDE = ("r = np.random.default_rng(1); net.hidden_size_list = [600]; "
         "net.params['W1'] = r.standard_normal((4, 600)); net.params['b1'] = np.zeros(600); "
         "net.params['W2'] = r.standard_normal((600, 3)); net.params['b2'] = np.zeros(3)")
_F32 = ("net.dtype = np.float32; "
        "[net.params.__setitem__(k, v.astype(np.float32)) for k, v in list(net.params.items())]")

MUTATIONS = {
    "activation renamed": ("sigmoid", "net.activation = 'relu'"),
    "activation renamed back": ("relu", "net.activation = 'sigmoid'"),
    "activation invalid": ("relu", "net.activation = 'softplus'"),
    "activation renamed to tanh": ("relu", "net.activation = 'tanh'"),
    "wider hidden layer with its weights": ("relu", _WIDE),
    "wider hidden layer, weights unchanged": ("relu", "net.hidden_size_list = [600]"),
    "dtype float32 with float32 weights": ("relu", _F32),
    "dtype float32, weights float64": ("relu", "net.dtype = np.float32"),
    "weights float32, dtype float64": ("relu", _F32.split('; ', 1)[1]),
    "W1 replaced in params": ("relu", "net.params['W1'] = np.ones((4, 6))"),
    "W1 replaced by a Fortran array": ("relu", "net.params['W1'] = np.asfortranarray(np.ones((4, 6)))"),
    "W1 of the wrong shape": ("relu", "net.params['W1'] = np.ones((5, 6))"),
    "W2 of the wrong shape": ("relu", "net.params['W2'] = np.ones((7, 3))"),
    "b1 of the wrong length": ("relu", "net.params['b1'] = np.ones(5)"),
    "W1 is text": ("relu", "net.params['W1'] = 'W'"),
    "layer W replaced": ("relu", "net.layers['Affine1'].W = np.ones((4, 6))"),
    "output_size larger": ("relu", "net.output_size = 5"),
    "output_size smaller": ("relu", "net.output_size = 2"),
    "input_size changed": ("relu", "net.input_size = 5"),
    "loss renamed": ("relu", "net.loss_name = 'mse'"),
    "layer removed": ("relu", "del net.layers['Activation_function1']"),
    "layers reordered": ("relu", "net.layers.move_to_end('Affine1')"),
    "activation layer swapped": ("relu", "net.layers['Activation_function1'] = type(net.layers['Affine1']).__module__ and __import__(type(net.layers['Affine1']).__module__, fromlist=['Sigmoid']).Sigmoid()"),
    "weight decay negative": ("relu", "net.weight_decay_lambda = -1.0"),
    "weight decay text": ("relu", "net.weight_decay_lambda = 'a'"),
    "hidden_layer_num changed": ("relu", "net.hidden_layer_num = 3"),
    "params dict replaced": ("relu", "net.params = {k: v * 2 for k, v in net.params.items()}"),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_changed_attributes_match_the_reference_or_raise(case):
    """Any public attribute changed between calls: the compiled network computes what the
    reference network computes after the same change, or both raise a clear error;
    never a crash (the kernel runs only on a structure it has checked)."""
    activation, mutate = MUTATIONS[case]
    script = _MUTATION_SCRIPT.replace("ACTIVATION", repr(activation)).replace("MUTATE", mutate)
    # the installed fastmlp, from a neutral directory (not the source tree)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=120)
    assert proc.returncode == 0, f"{case}: rc={proc.returncode}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip() in ("same",) or proc.stdout.startswith("raised"), proc.stdout


def test_params_entry_replaced_is_what_predict_gradient_and_save_see(tmp_path):
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((5, 4)), np.array([0, 1, 2, 0, 1])
    net = fastmlp.MultiLayerNet(4, [6], 3, seed=0)
    new_W1 = rng.standard_normal((4, 6))
    net.params["W1"] = new_W1
    assert net.layers["Affine1"].W is new_W1
    fresh = fastmlp.MultiLayerNet(4, [6], 3, seed=0)
    np.copyto(fresh.params["W1"], new_W1)
    np.testing.assert_array_equal(net.predict(x), fresh.predict(x))
    np.testing.assert_array_equal(net.gradient(x, t)["W1"], fresh.gradient(x, t)["W1"])
    fastmlp.save(net, tmp_path / "n.fastmlp")
    np.testing.assert_array_equal(fastmlp.load(tmp_path / "n.fastmlp").predict(x), net.predict(x))


@pytest.mark.parametrize("cached", ["Affine2.x", "Activation_function1.mask", "grad W1",
                                    "last_layer.y"])
def test_own_buffers_passed_back_in_are_copied(cached):
    """An input that is one of the network's own buffers gives the gradient a copy of it
    gives, and is not overwritten by the call."""
    rng = np.random.default_rng(0)
    net = fastmlp.MultiLayerNet(6, [6], 6, seed=0)
    x, t = rng.standard_normal((6, 6)), np.array([0, 1, 2, 3, 4, 5])
    grads = net.gradient(x, t)
    layer, _, attribute = cached.partition(".")
    a = {"grad W1": lambda: grads["W1"], "last_layer.y": lambda: net.last_layer.y}.get(
        cached, lambda: getattr(net.layers[layer], attribute))()
    a_copy = np.array(a, dtype=np.float64)
    expected = {k: v.copy() for k, v in
                fastmlp.MultiLayerNet(6, [6], 6, seed=0).gradient(a_copy, t).items()}
    x_in = a.astype(np.float64, copy=False)   # the mask (bool) comes in as a float copy
    before = np.array(x_in, copy=True)
    got = net.gradient(x_in, t)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(x_in, before)   # what was passed in is not overwritten


def test_fused_sgd_step_with_x_aliasing_a_weight():
    """x that is a view of W1 (legal, if odd): the fused update reads the x it was given."""
    net = fastmlp.MultiLayerNet(4, [4], 3, seed=0)
    twin = fastmlp.MultiLayerNet(4, [4], 3, seed=0)
    t = np.array([0, 1, 2, 0])
    x = net.params["W1"]
    net.train_step(x, t, fastmlp.optimizers.SGD(lr=0.5))
    twin.train_step(twin.params["W1"].copy(), t, fastmlp.optimizers.SGD(lr=0.5))
    for k in net.params:
        np.testing.assert_allclose(net.params[k], twin.params[k], rtol=1e-12, atol=1e-14)
