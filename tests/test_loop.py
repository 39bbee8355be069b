"""The one training loop (fastmlp._loop): the step, its gradient hook, the two samplers, and
the loop's commit rule, checked against plain gradient + update and the reference."""
import functools
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import _loop, _sigint
from fastmlp import reference as R


def _data(rng, n=40, d=6, c=3):
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


def _nets(dtype=np.float64, cls=fastmlp.MultiLayerNet):
    return [cls(6, [5, 4], 3, dtype=dtype, seed=1) for _ in range(2)]


def _same(a, b):
    return all(a[k].tobytes() == b[k].tobytes() for k in a)


# ---------------------------------------------------------------- step

@pytest.mark.parametrize("make_opt", [lambda: fastmlp.optimizers.Momentum(0.05),
                                      lambda: fastmlp.optimizers.Adam(0.01)])
def test_step_is_gradient_then_update(make_opt):
    rng = np.random.default_rng(0)
    x, t = _data(rng)
    (net, twin), (opt, twin_opt) = _nets(), (make_opt(), make_opt())
    for _ in range(3):
        loss = _loop.step(net, opt, x, t)
        grads = twin.gradient(x, t)
        assert loss == twin.last_loss
        twin_opt.update(twin.params, grads)
    assert _same(net.params, twin.params)


def test_gradient_hook_sees_the_gradients_before_the_update_and_its_changes_count():
    """The data-parallel plug: the hook runs between gradient and update (the parameters
    are not yet updated) and what it writes into the gradients is what gets applied."""
    rng = np.random.default_rng(1)
    x, t = _data(rng)
    net, twin = _nets()
    before = {k: v.copy() for k, v in net.params.items()}
    seen = []

    def halve(grads, loss):   # what an all-reduce may do: change the gradients in place
        seen.append(_same(net.params, before))
        for g in grads.values():
            g *= 0.5
        return loss

    loss = _loop.step(net, fastmlp.optimizers.SGD(0.1), x, t, gradient_hook=halve)
    assert seen == [True]
    grads = twin.gradient(x, t)
    assert loss == twin.last_loss
    fastmlp.optimizers.SGD(0.05).update(twin.params, grads)
    assert _same(net.params, twin.params)


def test_plain_sgd_fuses_unless_a_hook_must_see_the_gradients():
    rng = np.random.default_rng(2)
    x, t = _data(rng)
    fused, hooked = _nets()
    calls = []
    loss_fused = _loop.step(fused, fastmlp.optimizers.SGD(0.1), x, t)
    loss_hooked = _loop.step(hooked, fastmlp.optimizers.SGD(0.1), x, t,
                             gradient_hook=lambda g, loss: calls.append(1) or loss)
    assert calls == [1]
    assert fused.layers["Affine1"].dW is None          # fused: no gradient stored
    assert hooked.layers["Affine1"].dW is not None
    assert loss_fused == loss_hooked
    for k in fused.params:
        np.testing.assert_allclose(fused.params[k], hooked.params[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("hook", [None, "hook"])
def test_a_non_finite_loss_applies_nothing(hook):
    rng = np.random.default_rng(3)
    x, t = _data(rng)
    x[0, 0] = np.inf
    net, _ = _nets()
    before = {k: v.copy() for k, v in net.params.items()}
    losses = []

    def record(grads, loss):   # joined whatever the loss (a data-parallel peer waits on it)
        losses.append(loss)
        return loss

    opt = fastmlp.optimizers.Adam(0.01)
    with pytest.raises(ValueError, match="x contains NaN or infinity"):
        _loop.step(net, opt, x, t, gradient_hook=record if hook else None)
    net.params["W1"][0, 0] = np.nan
    before["W1"][0, 0] = np.nan
    x[0, 0] = 0.0
    loss = _loop.step(net, opt, x, t, gradient_hook=record if hook else None)
    assert not math.isfinite(loss)
    assert len(losses) == (1 if hook else 0) and opt.iter == 0
    assert _same(net.params, before)


def test_the_hook_decides_the_loss_that_is_checked():
    """A finite local loss whose all-reduced (global) loss is not finite applies nothing."""
    rng = np.random.default_rng(7)
    x, t = _data(rng)
    net, _ = _nets()
    before = {k: v.copy() for k, v in net.params.items()}
    opt = fastmlp.optimizers.Momentum(0.05)
    loss = _loop.step(net, opt, x, t, gradient_hook=lambda g, loss: float("nan"))
    assert math.isnan(loss) and _same(net.params, before) and not opt.v


def test_step_on_the_reference_network_matches_the_compiled_one():
    rng = np.random.default_rng(4)
    x, t = _data(rng)
    net = fastmlp.MultiLayerNet(6, [5], 3, seed=2, weight_decay_lambda=0.1)
    ref = R.MultiLayerNet(6, [5], 3, seed=2, weight_decay_lambda=0.1)
    for _ in range(3):
        a = _loop.step(net, fastmlp.optimizers.Momentum(0.05), x, t, weight_decay=0.2)
        b = _loop.step(ref, R.optimizers.Momentum(0.05), x, t, weight_decay=0.2)
        assert a == pytest.approx(b, rel=1e-12)
    for k in net.params:
        np.testing.assert_allclose(net.params[k], ref.params[k], rtol=1e-10, atol=1e-12)
    assert net.weight_decay_lambda == 0.1 and ref.weight_decay_lambda == 0.1


# ---------------------------------------------------------------- samplers

@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_epoch_batches_cover_every_sample_once_with_a_short_last_batch(shuffle, weighted):
    rng = np.random.default_rng(5)
    X = np.arange(23, dtype=np.float64)[:, None]
    y = np.arange(23)
    w = rng.uniform(0.5, 2.0, 23) if weighted else None
    sampler = _loop.EpochBatches(X, y, w, 5, np.random.default_rng(0), shuffle)
    critical = _sigint.critical_section()
    for _ in range(2):
        seen, sizes, ends = [], [], []
        while True:
            batch = sampler.draw(critical)
            sampler.commit()
            seen += list(batch.t)
            sizes.append(len(batch.t))
            ends.append(batch.ends_epoch)
            assert np.array_equal(batch.x[:, 0], batch.t)
            if weighted:
                np.testing.assert_allclose(batch.sample_weight.mean(), 1.0)
                assert batch.weight == pytest.approx(w[batch.t].sum())
            else:
                assert batch.sample_weight is None and batch.weight == len(batch.t)
            if batch.ends_epoch:
                break
        assert sorted(seen) == list(range(23)) and sizes == [5, 5, 5, 5, 3]
        assert ends == [False] * 4 + [True]
        assert (seen != list(range(23))) == shuffle


def test_shuffled_stream_draws_without_replacement_and_retries_an_uncommitted_batch():
    x = np.arange(10, dtype=np.float32)[:, None]
    t = np.arange(10)
    stream = _loop.ShuffledStream(x, t, 4, np.random.default_rng(0), np.float64)
    critical = _sigint.critical_section()
    first = stream.draw(critical)
    assert first.x.dtype == np.float64
    again = stream.draw(critical)   # not committed: the same batch again
    assert np.array_equal(first.t, again.t)
    drawn = []
    for _ in range(5):   # 20 samples: two whole passes
        batch = stream.draw(critical)
        stream.commit()
        drawn += list(batch.t)
    assert sorted(drawn[:10]) == list(range(10)) and sorted(drawn[10:]) == list(range(10))


class _Door:
    """A front door that records what the loop asks of it."""

    def __init__(self, diverge_at=None):
        self.steps, self.epochs, self.diverge_at = [], 0, diverge_at

    def batch_weight_decay(self, batch):
        return None

    def record_step(self, batch, loss):
        self.steps.append(loss)

    def epoch_end_due(self, batch):
        return batch.ends_epoch

    def end_epoch(self, critical):
        self.epochs += 1

    def diverged(self, loss):
        raise _loop.DivergenceError("diverged", len(self.steps) + 1, self.epochs + 1, loss)


def test_loop_commits_a_step_only_when_its_loss_is_finite():
    rng = np.random.default_rng(6)
    X, y = _data(rng, n=12)
    net, _ = _nets()
    sampler = _loop.EpochBatches(X, y, None, 5, np.random.default_rng(0), False)
    door = _Door()
    loop = _loop.Loop(sampler, door, functools.partial(_loop.step, net, fastmlp.optimizers.SGD(0.1)))
    with _sigint.deferred_sigint() as critical:
        loop.run(critical, lambda: door.epochs == 2)
        assert len(door.steps) == 6 and door.epochs == 2
        net.params["W1"][0, 0] = np.nan
        with pytest.raises(_loop.DivergenceError):
            loop.run_step(critical)
    assert len(door.steps) == 6 and sampler.start == 0   # the position was not taken
