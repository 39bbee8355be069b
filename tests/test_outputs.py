"""The logistic (sigmoid + binary cross-entropy) and Poisson (exp + half Poisson deviance)
output layers: the compiled code (the fused network kernel's, also behind
``layers.SigmoidWithLoss`` / ``layers.PoissonLoss``) against the numpy reference, against
scikit-learn's own loss functions, and against numerical gradients."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastmlp
from fastmlp import _backend, layers
from fastmlp import reference as ref
from fastmlp.reference.output_layers import logistic_loss, poisson_loss

from conftest import unit_roundoff

LOSSES = ["logistic", "poisson"]
REF_LOSS = {"logistic": logistic_loss, "poisson": poisson_loss}


def _targets(loss, rng, shape):
    """0/1 labels for the logistic output (some soft ones), counts (many zeros) for Poisson."""
    if loss == "logistic":
        t = (rng.random(shape) < 0.5).astype(np.float64)
        t[rng.random(shape) < 0.2] = rng.random()   # a soft target in [0, 1]
        return t
    return rng.poisson(1.5, shape).astype(np.float64)


def _reference_output(loss, z, t, w):
    """(output, gradient w * (y - t) / N, summed loss) in float64 from the numpy twin."""
    z, t = z.astype(np.float64), t.astype(np.float64)
    y = ref.sigmoid(z) if loss == "logistic" else np.exp(z)
    w = np.ones(len(z)) if w is None else w.astype(np.float64)
    per_row = REF_LOSS[loss](z, t).sum(axis=1)
    return y, (y - t) * (w / len(z))[:, None], float(w @ per_row)


@pytest.mark.parametrize("loss", LOSSES)
@given(n=st.integers(1, 40), c=st.integers(1, 9), weighted=st.booleans(),
       scale=st.sampled_from([0.1, 3.0, 30.0]), seed=st.integers(0, 2**32 - 1))
def test_output_kernel_matches_reference(loss, dtype, n, c, weighted, scale, seed):
    """Output, gradient and summed loss of the kernel's output pass against the reference
    at odd sizes, with and without sample weights (elementwise rtol 4u of the dtype, the
    loss at the loss-scalar tolerance)."""
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, c)) * scale).astype(dtype)
    if loss == "poisson":
        z = np.clip(z, -60, 60).astype(dtype)   # exp(z) stays finite in float32
    t = _targets(loss, rng, (n, c)).astype(dtype)
    w = rng.uniform(0.1, 3, n).astype(dtype) if weighted else None
    y, d, total = _backend.output_forward_backward(loss, z, None, t, w)
    y_ref, d_ref, total_ref = _reference_output(loss, z, t, w)
    u = unit_roundoff(dtype)
    assert y.dtype == d.dtype == dtype
    # subnormal outputs (sigmoid(-90) in float32) have fewer digits: atol of the smallest normal
    np.testing.assert_allclose(y, y_ref, rtol=4 * u, atol=np.finfo(dtype).tiny)
    wn = (np.ones(n) if w is None else w.astype(np.float64)) / n
    np.testing.assert_allclose(d, d_ref, rtol=0,
                               atol=4 * u * ((np.abs(y_ref) + np.abs(t)) * wn[:, None]).max()
                               + np.finfo(dtype).tiny)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    # sum of terms of either sign: the bound is relative to the sum of their magnitudes
    magnitude = float(wn @ np.abs(REF_LOSS[loss](z.astype(np.float64), t.astype(np.float64))
                                  ).sum(axis=1)) * n
    assert abs(total - total_ref) <= rtol * max(abs(total_ref), magnitude)


@pytest.mark.parametrize("loss", LOSSES)
def test_losses_are_sklearns(loss, rng):
    """Mean over rows of the summed loss equals scikit-learn's binary_log_loss /
    poisson_loss (its constants included) on the outputs, weighted or not."""
    base = pytest.importorskip("sklearn.neural_network._base")
    z = rng.standard_normal((23, 3)) * 4
    t = _targets(loss, rng, z.shape)
    if loss == "logistic":
        t = np.round(t)
    w = rng.uniform(0.2, 2, len(z))
    for weights in (None, w):
        y, _, total = _backend.output_forward_backward(loss, z, None, t, weights)
        ours = total / (len(z) if weights is None else weights.sum())
        theirs = (base.binary_log_loss(t, y, weights) if loss == "logistic"
                  else base.poisson_loss(t, y, weights))
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_losses_stay_finite_for_huge_logits():
    """From the logits: the logistic loss is exact at |z| = 1000 (sklearn's clipped
    probabilities are not), the Poisson loss finite for very negative z."""
    z = np.array([[1000.0, -1000.0, 0.0]])
    t = np.array([[0.0, 1.0, 1.0]])
    y, d, total = _backend.output_forward_backward("logistic", z, None, t)
    np.testing.assert_allclose(total, 2000 + np.log(2), rtol=1e-15)
    np.testing.assert_array_equal(y, [[1.0, 0.0, 0.5]])
    z, t = np.array([[-1000.0, -800.0, 0.0]]), np.array([[0.0, 2.0, 1.0]])
    y, d, total = _backend.output_forward_backward("poisson", z, None, t)
    expected = (2 * np.log(2) + 1600 - 2) + (0 - 0 - 1 + 1)   # t log t - t z - t + exp(z)
    assert np.isfinite(total) and np.isclose(total, expected, rtol=1e-15)


@pytest.mark.parametrize("loss", LOSSES)
def test_layers_match_reference_layers(loss, dtype, tol, rng):
    """SigmoidWithLoss / PoissonLoss: forward (loss, y) and backward(dout) as the reference."""
    cls = {"logistic": "SigmoidWithLoss", "poisson": "PoissonLoss"}[loss]
    z = rng.standard_normal((7, 4)).astype(dtype)
    t = _targets(loss, rng, z.shape).astype(dtype)
    ours, theirs = getattr(layers, cls)(), getattr(ref.layers, cls)()
    np.testing.assert_allclose(ours.forward(z, t), theirs.forward(z, t), rtol=tol["loss"])
    np.testing.assert_allclose(ours.y, theirs.y, rtol=tol["rtol"])
    np.testing.assert_allclose(ours.backward(2.5), theirs.backward(2.5), rtol=tol["rtol"],
                               atol=tol["atol_scale"])


@pytest.mark.parametrize("loss", LOSSES)
def test_layers_check_targets(loss):
    """Targets outside the output's range are a ValueError naming t, nothing recorded."""
    layer = layers.SigmoidWithLoss() if loss == "logistic" else layers.PoissonLoss()
    z = np.zeros((2, 2))
    with pytest.raises(ValueError, match="t must"):
        layer.forward(z, np.array([[0.0, 2.0], [0.0, 1.0]]) * (1 if loss == "logistic" else -1))
    assert layer.y is None and layer.loss is None
    with pytest.raises(ValueError, match="same shape"):
        layer.forward(z, np.zeros((2, 3)))


def _nets(loss, dtype, activation, seed=0):
    kw = dict(activation=activation, weight_init_std=0.5, dtype=dtype, seed=seed, loss=loss)
    return (fastmlp.MultiLayerNet(5, [6, 4], 3, **kw),
            ref.MultiLayerNet(5, [6, 4], 3, **kw))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_fused_network_matches_reference(loss, activation, dtype, tol, rng):
    """The compiled network's loss and gradient (one fused call) against the reference
    network's layer-by-layer ones, with weight decay."""
    net, ref_net = _nets(loss, dtype, activation)
    x = rng.standard_normal((11, 5)).astype(dtype)
    t = _targets(loss, rng, (11, 3)).astype(dtype)
    assert net._fused.plan(net) is not None   # the fused path runs
    np.testing.assert_allclose(net.loss(x, t), ref_net.loss(x, t), rtol=tol["loss"] * 10)
    grads = net.gradient(x, t, weight_decay=0.1)
    ref_grads = ref_net.gradient(x, t, weight_decay=0.1)
    for k in ref_grads:
        scale = np.abs(ref_grads[k]).max()
        np.testing.assert_allclose(grads[k], ref_grads[k], rtol=tol["rtol"],
                                   atol=tol["atol_scale"] * scale, err_msg=k)
    np.testing.assert_allclose(net.last_layer.y, ref_net.last_layer.y, rtol=tol["rtol"])


@pytest.mark.parametrize("loss", LOSSES)
def test_sample_weights_are_repeated_rows(loss, rng):
    """Integer sample weights give the gradient of the rows repeated (scaled by the row
    counts), on the reference network: the weighting of the fused kernel checked."""
    net, ref_net = _nets(loss, np.float64, "tanh")
    x = rng.standard_normal((9, 5))
    t = _targets(loss, rng, (9, 3))
    w = rng.integers(0, 4, 9)
    w[0] = 1
    grads = net.gradient(x, t, sample_weight=w.astype(np.float64))
    rep = np.repeat(np.arange(9), w)
    ref_grads = ref_net.gradient(x[rep], t[rep])
    for k in ref_grads:
        scale = np.abs(ref_grads[k]).max()
        np.testing.assert_allclose(grads[k], ref_grads[k] * len(rep) / 9, rtol=1e-9,
                                   atol=1e-12 * scale, err_msg=k)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("net_kind", ["compiled", "reference"])
def test_gradient_check(loss, net_kind, rng):
    """Backprop against central differences (float64, TESTING.md's per-element bound)."""
    net = _nets(loss, np.float64, "tanh")[0 if net_kind == "compiled" else 1]
    x = rng.standard_normal((6, 5))
    t = _targets(loss, rng, (6, 3))
    numeric = net.numerical_gradient(x, t)
    analytic = net.gradient(x, t)
    for k, n in numeric.items():
        assert np.all(np.abs(analytic[k] - n) <= 1e-8 + 1e-5 * np.abs(n)), k


def test_network_checks_targets_and_accuracy():
    """Float targets of the wrong range or shape are ValueErrors naming t; accuracy needs
    class targets."""
    net = fastmlp.MultiLayerNet(3, [4], 2, loss="poisson", seed=0)
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="t must be >= 0"):
        net.gradient(x, -np.ones((2, 2)))
    with pytest.raises(ValueError, match="t must have shape"):
        net.loss(x, np.ones((2, 3)))
    with pytest.raises(TypeError, match="accuracy needs class targets"):
        net.accuracy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="loss must be one of"):
        fastmlp.MultiLayerNet(3, [4], 2, loss="hinge")


@pytest.mark.parametrize("loss", LOSSES)
def test_extend_network_matches_reference(loss, rng):
    """MultiLayerNetExtend (dropout and batch norm, its own fused path) with these outputs:
    gradients of three steps as the reference's (same mask streams and statistics)."""
    kw = dict(activation="relu", seed=3, loss=loss, use_dropout=True, use_batchnorm=True,
              dropout_ration=0.2)
    net = fastmlp.MultiLayerNetExtend(6, [7, 5], 3, **kw)
    ref_net = ref.MultiLayerNetExtend(6, [7, 5], 3, **kw)
    assert net._fused_extend.plan(net) is not None
    for _ in range(3):
        x, t = rng.standard_normal((9, 6)), _targets(loss, rng, (9, 3))
        grads, ref_grads = net.gradient(x, t), ref_net.gradient(x, t)
        scale = max(float(np.abs(g).max()) for g in ref_grads.values())
        for k in ref_grads:
            np.testing.assert_allclose(grads[k], ref_grads[k], rtol=1e-9, atol=1e-12 * scale,
                                       err_msg=k)
        np.testing.assert_allclose(net.last_loss, ref_net.last_loss, rtol=1e-9)
