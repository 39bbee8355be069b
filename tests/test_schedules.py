"""Learning-rate schedules (fastmlp.optimizers: ConstantLR, InverseScalingLR, AdaptiveLR,
EpochDecayLR) against the behaviour they replace: scikit-learn's ``SGDOptimizer``
(``iteration_ends``, ``trigger_stopping``), fastmlp's estimator and the Trainer's
``lr_decay``. Learning rates are compared bitwise (the same float operations).
"""
import math
import warnings

import numpy as np
import pytest

from fastmlp.optimizers import AdaptiveLR, ConstantLR, EpochDecayLR, InverseScalingLR


class _Opt:
    """Anything with an ``lr`` attribute is an optimizer to a schedule."""

    def __init__(self, lr):
        self.lr = lr


def _sk():
    return pytest.importorskip("sklearn.neural_network._stochastic_optimizers")


@pytest.mark.parametrize("lr0, power_t", [(0.1, 0.5), (0.003, 0.25), (1.0, 0.0), (0.2, 1.7)])
def test_invscaling_is_sklearns(lr0, power_t):
    so = _sk()
    sk = so.SGDOptimizer([np.zeros(2)], learning_rate_init=lr0, lr_schedule="invscaling",
                         power_t=power_t)
    sched, opt = InverseScalingLR(lr0, power_t), _Opt(lr0)
    for t in (0, 1, 7, 200, 1797, 10**6 + 3):
        sk.iteration_ends(t)
        sched.epoch_end(opt, t)
        assert opt.lr == sk.learning_rate
        for incremental in (False, True):
            assert sched.start_lr(lr0, t, incremental) == lr0 / (t + 1) ** power_t
    assert sched.plateau(opt) is False


@pytest.mark.parametrize("lr0", [0.1, 1e-3, 2e-6, 1e-6, 5e-7])
def test_adaptive_is_sklearns(lr0):
    """On each plateau: divide by 5 while lr > 1e-6 (keep going), else stop."""
    so = _sk()
    sk = so.SGDOptimizer([np.zeros(2)], learning_rate_init=lr0, lr_schedule="adaptive")
    sched, opt = AdaptiveLR(), _Opt(lr0)
    for _ in range(30):
        sk_stops = sk.trigger_stopping("plateau", verbose=False)
        keep = sched.plateau(opt)
        assert keep is (not sk_stops) and opt.lr == sk.learning_rate
        if sk_stops:
            break
    else:
        pytest.fail("never stopped")
    sched.epoch_end(opt, 100)   # no change between plateaus
    assert opt.lr == sk.learning_rate
    assert sched.start_lr(lr0, 500, incremental=False) == lr0
    assert sched.start_lr(lr0, 500, incremental=True) is None   # partial_fit keeps the lr


def test_constant_is_sklearns():
    so = _sk()
    sk = so.SGDOptimizer([np.zeros(2)], learning_rate_init=0.05, lr_schedule="constant")
    sched, opt = ConstantLR(), _Opt(0.05)
    sk.iteration_ends(99)
    sched.epoch_end(opt, 99)
    assert opt.lr == sk.learning_rate == 0.05
    assert sched.plateau(opt) is (not sk.trigger_stopping("plateau", verbose=False)) is False
    assert sched.start_lr(0.05, 99, True) == 0.05


@pytest.mark.parametrize("factor", [0.9, 0.5, 1.0, 0.123])
def test_epoch_decay_is_the_trainers_lr_decay(factor):
    lr = 0.09
    sched, opt = EpochDecayLR(factor), _Opt(lr)
    for _ in range(6):
        lr *= factor   # Trainer: self.optimizer.lr *= self.lr_decay
        sched.epoch_end(opt, 0)
        assert opt.lr == lr
    assert sched.plateau(opt) is False and sched.start_lr(0.09, 0, False) == 0.09


@pytest.mark.parametrize("kwargs, exc", [
    (dict(cls=InverseScalingLR, lr0=0.0, power_t=0.5), ValueError),
    (dict(cls=InverseScalingLR, lr0=0.1, power_t=-1.0), ValueError),
    (dict(cls=InverseScalingLR, lr0=0.1, power_t=math.nan), ValueError),
    (dict(cls=AdaptiveLR, divisor=0.0), ValueError),
    (dict(cls=AdaptiveLR, min_lr=-1e-6), ValueError),
    (dict(cls=EpochDecayLR, factor=1.5), ValueError),
    (dict(cls=EpochDecayLR, factor=0.0), ValueError),
    (dict(cls=EpochDecayLR, factor="0.5"), TypeError),
])
def test_bad_schedule_arguments(kwargs, exc):
    cls = kwargs.pop("cls")
    with pytest.raises(exc):
        cls(**kwargs)


# ---------------------------------------------------------------- the front doors they replace


def _digits(n=120):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    return x[:n] / 16.0, y[:n]


def test_estimator_invscaling_lr_is_the_schedules():
    from fastmlp import MLPClassifier
    x, y = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate="invscaling",
                        learning_rate_init=0.2, power_t=0.3, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x, y)
        sched, opt = InverseScalingLR(0.2, 0.3), _Opt(0.2)
        sched.epoch_end(opt, clf.t_)
        assert clf._optimizer.lr == opt.lr
        clf.partial_fit(x, y)   # starts at start_lr(lr0, t_, True), ends at epoch_end
        sched.epoch_end(opt, clf.t_)
        assert clf._optimizer.lr == opt.lr


def test_estimator_adaptive_lr_is_the_schedules():
    """A tolerance no epoch can meet: every n_iter_no_change + 1 epochs is a plateau; the
    lr is divided by 5 until it is <= 1e-6, then the fit stops."""
    from fastmlp import MLPClassifier
    x, y = _digits()
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate="adaptive",
                        learning_rate_init=0.01, tol=1e9, n_iter_no_change=1, max_iter=200,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x, y)
    sched, opt = AdaptiveLR(), _Opt(0.01)
    plateaus = 1
    while sched.plateau(opt):
        plateaus += 1
    assert clf._optimizer.lr == opt.lr
    # the first epoch sets best_loss_, then n_iter_no_change + 1 epochs per plateau
    assert clf.n_iter_ == 1 + 2 * plateaus
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.set_params(warm_start=True, max_iter=1)
        clf.fit(x, y)   # a fit (not incremental) restarts from learning_rate_init
    assert clf._optimizer.lr == AdaptiveLR().start_lr(0.01, clf.t_, False) == 0.01


def test_trainer_lr_decay_is_epoch_decay():
    from fastmlp import Trainer
    from fastmlp.reference import MultiLayerNet
    x, y = _digits(100)
    t = np.eye(10)[y]
    tr = Trainer(MultiLayerNet(64, [10], 10, seed=0), x, t, x[:20], t[:20], epochs=3,
                 mini_batch_size=20, optimizer="SGD", optimizer_param={"lr": 0.09},
                 lr_decay=0.9, verbose=False, seed=0, sampling="epoch")
    sched, opt = EpochDecayLR(0.9), _Opt(0.09)
    for step in range(tr.max_iter):
        assert tr.optimizer.lr == opt.lr
        tr.train_step()
        if (step + 1) % 5 == 0:
            sched.epoch_end(opt, 0)
    assert tr.optimizer.lr == opt.lr
