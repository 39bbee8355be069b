"""The seeding convention (issue 13): scikit-learn's ``random_state`` rule everywhere.

``seed=None`` (networks, Trainer) and ``random_state=None`` (estimators) use numpy's
global random state, so ``np.random.seed(s)`` before a run makes it repeat; an int
or a Generator keeps a stream of its own and leaves the global state alone. A
network's initial weights with ``seed=None`` are the book's: ``scale *
np.random.randn(n_in, n_out)`` per layer, in order.
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import reference as R
from fastmlp.datasets import load_digits

NETS = [pytest.param(fastmlp, id="compiled"), pytest.param(R, id="reference")]


def _global_state():
    return np.random.get_state()[1].copy(), np.random.get_state()[2]


@pytest.fixture(scope="module")
def digits():
    (x, t), (xt, tt) = load_digits()
    return x[:200], t[:200], xt[:60], tt[:60]


@pytest.mark.parametrize("module", NETS)
def test_network_with_seed_none_draws_the_books_weights(module):
    np.random.seed(21)
    net = module.MultiLayerNet(10, [7, 6], 3)          # weight_init_std 'relu': He
    np.random.seed(21)
    for i, (n_in, n_out) in enumerate([(10, 7), (7, 6), (6, 3)], start=1):
        want = np.sqrt(2.0 / n_in) * np.random.randn(n_in, n_out)   # the book's init
        np.testing.assert_array_equal(net.params[f"W{i}"], want)
        np.testing.assert_array_equal(net.params[f"b{i}"], np.zeros(n_out))
    np.random.seed(4)
    two = module.TwoLayerNet(5, 4, 2)
    np.random.seed(4)
    np.testing.assert_array_equal(two.params["W1"], 0.01 * np.random.randn(5, 4))
    np.testing.assert_array_equal(two.params["W2"], 0.01 * np.random.randn(4, 2))


@pytest.mark.parametrize("module", NETS)
def test_network_seed_none_follows_the_global_state(module):
    np.random.seed(3)
    a, b = module.MultiLayerNet(4, [5], 2), module.MultiLayerNet(4, [5], 2)
    np.random.seed(3)
    a2 = module.MultiLayerNet(4, [5], 2)
    np.testing.assert_array_equal(a.params["W1"], a2.params["W1"])
    assert not np.array_equal(a.params["W1"], b.params["W1"])   # the state moved on


@pytest.mark.parametrize("module", NETS)
@pytest.mark.parametrize("seed", [0, 12345, "generator", "randomstate"])
def test_network_own_stream_leaves_the_global_state(module, seed):
    def make():
        s = {"generator": np.random.default_rng(8),
             "randomstate": np.random.RandomState(8)}.get(seed, seed)
        return module.MultiLayerNet(4, [5], 2, dtype=np.float32, seed=s)

    np.random.seed(0)
    before = _global_state()
    first = make()
    after = _global_state()
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1] == before[1]
    np.random.seed(99)   # a different global state changes nothing
    np.testing.assert_array_equal(make().params["W1"], first.params["W1"])
    if seed == 0:
        want = np.sqrt(2.0 / 4) * np.random.default_rng(0).standard_normal((4, 5))
        np.testing.assert_array_equal(first.params["W1"], want.astype(np.float32))


@pytest.mark.parametrize("seed,error", [("0", TypeError), (1.5, TypeError), (True, TypeError),
                                        (-1, ValueError)])
def test_network_bad_seed_names_it(seed, error):
    with pytest.raises(error, match="seed"):
        fastmlp.MultiLayerNet(4, [5], 2, seed=seed)


def _train(digits, seed, **kw):
    x, t, xt, tt = digits
    net = fastmlp.MultiLayerNet(64, [20], 10, seed=0)
    trainer = fastmlp.Trainer(net, x, t, xt, tt, epochs=2, mini_batch_size=32,
                              optimizer="SGD", optimizer_param={"lr": 0.05}, verbose=False,
                              seed=seed, **kw)
    trainer.train()
    return trainer.train_loss_list, net.params["W1"].copy()


def test_trainer_seed_none_repeats_after_np_random_seed(digits):
    np.random.seed(5)
    losses, W = _train(digits, None)
    np.random.seed(5)
    losses2, W2 = _train(digits, None)
    assert losses == losses2
    np.testing.assert_array_equal(W, W2)
    losses3, _ = _train(digits, None)          # the global state has moved on
    assert losses3 != losses


def test_trainer_int_seed_ignores_the_global_state(digits):
    np.random.seed(1)
    losses, W = _train(digits, 7)
    state = _global_state()
    np.random.seed(2)
    losses2, W2 = _train(digits, 7)
    assert losses == losses2
    np.testing.assert_array_equal(W, W2)
    np.random.seed(1)
    _train(digits, 7)
    np.testing.assert_array_equal(_global_state()[0], state[0])   # nothing drawn from it


def test_trainer_bad_seed_draws_nothing(digits):
    x, t, xt, tt = digits
    net = fastmlp.MultiLayerNet(64, [20], 10, seed=0)
    before = _global_state()
    with pytest.raises(TypeError, match="seed"):
        fastmlp.Trainer(net, x, t, xt, tt, verbose=False, seed="x")
    with pytest.raises(ValueError, match="mini_batch_size"):   # a later check fails first
        fastmlp.Trainer(net, x, t, xt, tt, mini_batch_size=10**6, verbose=False)
    after = _global_state()
    np.testing.assert_array_equal(after[0], before[0])
    assert after[1] == before[1]   # the position too: a draw moves it, not the key


@pytest.mark.parametrize("cls", ["MLPClassifier", "MLPRegressor"])
def test_estimator_random_state_none_uses_the_global_state(cls, digits):
    pytest.importorskip("sklearn")
    x, t = digits[0][:120], digits[1][:120]
    y = t if cls == "MLPClassifier" else t.astype(float)

    def fit(random_state=None):
        est = getattr(fastmlp, cls)(hidden_layer_sizes=(8,), max_iter=3, random_state=random_state)
        with np.errstate(all="ignore"), pytest.warns(Warning):   # 3 epochs: not converged
            est.fit(x, y)
        return est.coefs_[0].copy()

    np.random.seed(17)
    first = fit()
    np.random.seed(17)
    np.testing.assert_array_equal(fit(), first)
    assert not np.array_equal(fit(), first)
    np.random.seed(0)
    own = fit(3)
    np.random.seed(1)
    np.testing.assert_array_equal(fit(3), own)
