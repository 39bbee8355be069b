"""The Trainer's default ``sampling='book'``: step for step the book's ``common/trainer.py``.

The expected runs are written out here as the book describes its loop (batches from
``np.random.choice``, the update, the loss after the update, accuracies after steps
0, iter_per_epoch, ...), with fastmlp's own networks and optimizers, and compared
with what the Trainer records."""
import math

import numpy as np
import pytest

import fastmlp
from fastmlp import optimizers, reference
from fastmlp.trainer import Trainer


def _data(n=150, n_test=40, features=12, classes=4):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, features))
    xt = rng.standard_normal((n_test, features))
    return x, x[:, :classes].argmax(1), xt, xt[:, :classes].argmax(1)


def _book_run(net, x, t, xt, tt, epochs, batch, optimizer):
    """The book's loop by hand, drawing from numpy's global state."""
    n = x.shape[0]
    iter_per_epoch = max(n / batch, 1)
    losses, train_acc, test_acc = [], [], []
    for i in range(int(epochs * iter_per_epoch)):
        mask = np.random.choice(n, batch)
        grads = net.gradient(x[mask], t[mask])
        optimizer.update(net.params, grads)
        losses.append(float(net.loss(x[mask], t[mask])))
        if i % iter_per_epoch == 0:
            train_acc.append(float(net.accuracy(x, t)))
            test_acc.append(float(net.accuracy(xt, tt)))
    return losses, train_acc, test_acc


@pytest.mark.parametrize("module", [fastmlp, reference], ids=["compiled", "reference"])
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_seeded_run_equals_the_books_loop(module, opt):
    x, t, xt, tt = _data()
    kw = {"lr": 0.1} if opt == "SGD" else {"lr": 0.01}

    np.random.seed(11)
    book_net = module.MultiLayerNet(12, [10, 8], 4, weight_decay_lambda=0.01)
    book = _book_run(book_net, x, t, xt, tt, epochs=4, batch=30,
                     optimizer=getattr(optimizers, opt)(**kw))

    np.random.seed(11)
    net = module.MultiLayerNet(12, [10, 8], 4, weight_decay_lambda=0.01)
    tr = Trainer(net, x, t, xt, tt, epochs=4, mini_batch_size=30, optimizer=opt,
                 optimizer_param=kw, verbose=False)
    tr.train()

    assert len(tr.train_loss_list) == len(book[0]) == 20
    np.testing.assert_allclose(tr.train_loss_list, book[0], rtol=1e-12)
    assert tr.train_acc_list == book[1] and tr.test_acc_list == book[2]
    assert len(tr.test_acc_list) == 4
    for k in net.params:
        np.testing.assert_allclose(net.params[k], book_net.params[k], rtol=1e-12, atol=1e-15)
    assert tr.final_test_acc == net.accuracy(xt, tt)


def test_draws_with_replacement_from_the_global_state():
    x, t, xt, tt = _data(n=20)
    np.random.seed(3)
    expected = [np.random.choice(20, 20) for _ in range(3)]
    seen = []

    class Recording(fastmlp.reference.MultiLayerNet):
        def gradient(self, x, t, *args, **kw):
            seen.append(x[:, 0].copy())
            return super().gradient(x, t, *args, **kw)

    net = Recording(12, [5], 4, seed=0)
    np.random.seed(3)
    tr = Trainer(net, x, t, xt, tt, epochs=3, mini_batch_size=20, verbose=False)
    tr.train()
    got = [x[idx, 0] for idx in expected]
    assert len(seen) == 3
    for a, b in zip(seen, got):
        np.testing.assert_array_equal(a, b)
    assert any(len(set(idx)) < 20 for idx in expected)   # with replacement: repeats


def _evaluated_after(batch):
    """The 0-based steps after which a 3-epoch run on 100 samples measured accuracies."""
    x, t, xt, tt = _data(n=100)
    tr = Trainer(fastmlp.MultiLayerNet(12, [5], 4, seed=0), x, t, xt, tt, epochs=3,
                 mini_batch_size=batch, verbose=False, seed=0)
    evaluated = []
    while tr.current_iter < tr.max_iter:
        before = len(tr.test_acc_list)
        tr.train_step()
        if len(tr.test_acc_list) > before:
            evaluated.append(tr.current_iter - 1)
    return evaluated, tr.max_iter


def test_whole_and_fractional_epochs_evaluate_on_schedule():
    assert _evaluated_after(25) == ([0, 4, 8], 12)
    # 100 / 30 steps per epoch: the book would measure only after step 0
    assert _evaluated_after(30) == ([0, math.ceil(100 / 30), math.ceil(2 * 100 / 30)], 10)


def test_lr_decay_after_each_evaluation_but_the_first():
    x, t, xt, tt = _data(n=100)
    tr = Trainer(fastmlp.MultiLayerNet(12, [5], 4, seed=0), x, t, xt, tt, epochs=3,
                 mini_batch_size=50, optimizer_param={"lr": 0.1}, lr_decay=0.5,
                 verbose=False, seed=0)
    seen = []
    while tr.current_iter < tr.max_iter:
        seen.append(tr.optimizer.lr)
        tr.train_step()
    # evaluations after steps 0, 2, 4; the rate halves after steps 2 and 4
    assert seen == [0.1, 0.1, 0.1, 0.05, 0.05, 0.025]


def test_a_diverging_step_applies_nothing_and_is_retried_with_the_same_batch():
    x, t, xt, tt = _data(n=60)
    net = fastmlp.MultiLayerNet(12, [5], 4, seed=0)
    tr = Trainer(net, x, t, xt, tt, epochs=2, mini_batch_size=20, verbose=False, seed=4)
    tr.train_step()
    before = {k: v.copy() for k, v in net.params.items()}
    net.params["W1"][0, 0] = np.nan
    with pytest.raises(fastmlp.DivergenceError):
        tr.train_step()
    assert tr.current_iter == 1 and len(tr.train_loss_list) == 1
    pending = tr._stream._pending.copy()
    net.params["W1"][0, 0] = before["W1"][0, 0]
    for k in before:
        np.testing.assert_array_equal(net.params[k], before[k])
    xb = x[pending]
    expected = net.loss(xb, t[pending])   # the retried step trains on the batch kept aside
    grads = net.gradient(xb, t[pending])
    after = {k: before[k] - 0.01 * grads[k] for k in before}
    tr.train_step()
    for k in before:
        np.testing.assert_allclose(net.params[k], after[k], rtol=1e-6, atol=1e-7)
    assert np.isfinite(expected) and tr.current_iter == 2


def test_sampling_is_checked_and_checkpoints_need_epoch_sampling(tmp_path):
    x, t, xt, tt = _data(n=40)
    net = fastmlp.MultiLayerNet(12, [5], 4, seed=0)
    with pytest.raises(ValueError, match="sampling"):
        Trainer(net, x, t, xt, tt, mini_batch_size=20, verbose=False, sampling="shuffle")
    from fastmlp import _checkpoint
    cls = _checkpoint.checkpointing(Trainer, str(tmp_path / "ck"), {})
    with pytest.raises(ValueError, match="sampling='epoch'"):
        cls(net, x, t, xt, tt, epochs=1, mini_batch_size=20, verbose=False, seed=0)
    cls(net, x, t, xt, tt, epochs=1, mini_batch_size=20, verbose=False, seed=0, sampling="epoch")
