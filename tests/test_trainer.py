"""fastmlp.Trainer: the book's training loop with seeded shuffling, lr decay and divergence checks."""
import math
import warnings

import numpy as np
import pytest

from fastmlp import MultiLayerNet as CompiledNet
from fastmlp import optimizers
from fastmlp.datasets import load_digits
from fastmlp.reference import MultiLayerNet as ReferenceNet
from fastmlp.trainer import DivergenceError, Trainer

NETS = [pytest.param(CompiledNet, id="compiled"), pytest.param(ReferenceNet, id="reference")]


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def small(digits, n_train=300, n_test=100):
    (x, t), (xt, tt) = digits
    return x[:n_train], t[:n_train], xt[:n_test], tt[:n_test]


def snapshot(params):
    return {k: v.copy() for k, v in params.items()}


def assert_params_bitwise(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype
        np.testing.assert_array_equal(a[k].view(np.uint8), b[k].view(np.uint8), err_msg=k)


class RecordingNet:
    """A stand-in network with the book's interface that records what it is given.

    One input feature holding the sample's index, two classes; gradients are zero.
    """

    def __init__(self, n_classes=2, fused=False, loss_value=0.25):
        self.params = {"W1": np.zeros((1, n_classes)), "b1": np.zeros(n_classes)}
        self.input_size, self.output_size = 1, n_classes
        self.dtype = np.float64
        self.batches, self.evaluated, self.gradient_calls = [], [], 0
        self.loss_value = loss_value
        if fused:
            self.train_step = self._train_step

    def gradient(self, x, t):
        self.gradient_calls += 1
        self.batches.append(x[:, 0].astype(int).copy())
        return {k: np.zeros_like(v) for k, v in self.params.items()}

    def loss(self, x, t):
        return self.loss_value

    def accuracy(self, x, t):
        self.evaluated.append(x.shape[0])
        return 0.5

    def _train_step(self, x, t, optimizer):
        self.batches.append(x[:, 0].astype(int).copy())
        if math.isfinite(self.loss_value):  # the contract: no update for a non-finite loss
            optimizer.update(self.params, {k: np.ones_like(v) for k, v in self.params.items()})
        return self.loss_value


def index_data(n):
    x = np.arange(n, dtype=np.float64)[:, None]
    return x, np.arange(n) % 2


# ---------------------------------------------------------------- end to end


@pytest.mark.parametrize("net_class", NETS)
def test_trains_digits(digits, net_class):
    """A few epochs on the real digits: test accuracy climbs above 0.9."""
    (x, t), (xt, tt) = digits
    net = net_class(64, [50], 10, seed=0)
    trainer = Trainer(net, x, t, xt, tt, epochs=5, mini_batch_size=50, optimizer="Adam",
                      optimizer_param={"lr": 0.005}, verbose=False, seed=0)
    final = trainer.train()
    assert trainer.iter_per_epoch == 1438 / 50
    assert trainer.max_iter == int(5 * 1438 / 50) == trainer.current_iter == len(trainer.train_loss_list)
    assert trainer.current_epoch == 5
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 5
    assert final == trainer.final_test_acc == trainer.test_acc_list[-1] == net.accuracy(xt, tt)
    assert trainer.test_acc_list[0] < trainer.test_acc_list[-1]
    assert final > 0.9
    losses = np.array(trainer.train_loss_list)
    assert losses[-28:].mean() < 0.5 * losses[:28].mean()


def test_compiled_and_reference_train_alike(digits):
    """Same seeds: the compiled and numpy networks follow the same trajectory (to rounding)."""
    x, t, xt, tt = small(digits)
    runs = []
    for net_class in (CompiledNet, ReferenceNet):
        net = net_class(64, [30], 10, seed=1)
        trainer = Trainer(net, x, t, xt, tt, epochs=3, mini_batch_size=30, optimizer="sgd",
                          optimizer_param={"lr": 0.1}, verbose=False, seed=2)
        trainer.train()
        runs.append((trainer.train_loss_list, net.params))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-9)
    for k in runs[0][1]:
        np.testing.assert_allclose(runs[0][1][k], runs[1][1][k], rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------- book semantics


def test_iteration_counts_follow_the_book():
    x, t = index_data(10)
    tr = Trainer(RecordingNet(), x, t, x, t, epochs=3, mini_batch_size=4, verbose=False)
    assert tr.iter_per_epoch == 2.5 and tr.max_iter == 7
    tr.train()
    assert tr.current_iter == 7 and tr.current_epoch == 3
    # epochs end after int(e * 2.5) steps: 2, 5, 7
    assert len(tr.test_acc_list) == 3
    full = Trainer(RecordingNet(), x, t, x, t, epochs=4, mini_batch_size=10, verbose=False)
    assert full.iter_per_epoch == 1 and full.max_iter == 4


@pytest.mark.parametrize("batch", [5, 4, 3, 10])
def test_each_sample_once_per_pass(batch):
    """Batches are slices of a shuffled stream: every pass over the data is a permutation."""
    n = 10
    x, t = index_data(n)
    net = RecordingNet()
    Trainer(net, x, t, x, t, epochs=3, mini_batch_size=batch, verbose=False, seed=5,
            sampling="epoch").train()
    stream = np.concatenate(net.batches)
    assert all(len(b) == batch for b in net.batches)
    for start in range(0, len(stream) - n + 1, n):
        assert sorted(stream[start:start + n]) == list(range(n))
    tail = stream[len(stream) - len(stream) % n:]
    assert len(set(tail)) == len(tail)
    assert not np.array_equal(stream[:n], stream[n:2 * n])  # reshuffled each pass


def test_seed_determinism_and_no_global_rng(digits):
    x, t, xt, tt = small(digits)

    def run(seed):
        net = CompiledNet(64, [20], 10, seed=0)
        tr = Trainer(net, x, t, xt, tt, epochs=2, mini_batch_size=25, optimizer="momentum",
                     optimizer_param={"lr": 0.05}, verbose=False, seed=seed)
        tr.train()
        return tr.train_loss_list, net.params

    np.random.seed(123)
    state = np.random.get_state()
    a, b, c = run(7), run(7), run(8)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]
    assert a[0] == b[0]
    assert_params_bitwise(a[1], b[1])
    assert a[0] != c[0]
    # a Generator works as a seed too
    assert run(np.random.default_rng(7))[0] == a[0]


def test_lr_decay_per_epoch(digits):
    """lr 0.09 with decay 0.9: the first epoch trains at 0.09, the second at 0.081."""
    x, t, xt, tt = small(digits, n_train=100)
    net = ReferenceNet(64, [10], 10, seed=0)
    tr = Trainer(net, x, t, xt, tt, epochs=3, mini_batch_size=20, optimizer="SGD",
                 optimizer_param={"lr": 0.09}, lr_decay=0.9, verbose=False, seed=0, sampling="epoch")
    seen = []
    for _ in range(tr.max_iter):
        seen.append(tr.optimizer.lr)
        tr.train_step()
    assert seen == [0.09] * 5 + [0.09 * 0.9] * 5 + [0.09 * 0.9 * 0.9] * 5
    assert math.isclose(seen[5], 0.081)
    # the decayed rate is the one the update uses: replay epoch 2's first step by hand
    net2 = ReferenceNet(64, [10], 10, seed=0)
    tr2 = Trainer(net2, x, t, xt, tt, epochs=3, mini_batch_size=20, optimizer="SGD",
                  optimizer_param={"lr": 0.09}, lr_decay=0.9, verbose=False, seed=0, sampling="epoch")
    for _ in range(5):
        tr2.train_step()
    before = snapshot(net2.params)
    xb, tb = tr2._next_batch()
    grads = net2.gradient(xb, tb)
    for k in before:
        np.testing.assert_allclose(before[k] - 0.081 * grads[k], before[k] - tr2.optimizer.lr * grads[k])


def test_lr_decay_with_adam(digits):
    x, t, xt, tt = small(digits, n_train=100)
    tr = Trainer(ReferenceNet(64, [10], 10, seed=0), x, t, xt, tt, epochs=2, mini_batch_size=50,
                 optimizer="adam", optimizer_param={"lr": 0.01}, lr_decay=0.5, verbose=False,
                 sampling="epoch")
    tr.train()
    assert tr.optimizer.lr == 0.0025


def test_loss_list_is_the_loss_before_each_update(digits):
    """With weight decay too: one full-batch step records exactly network.loss at the start."""
    x, t, xt, tt = small(digits, n_train=120)
    for net_class in (CompiledNet, ReferenceNet):
        net = net_class(64, [10], 10, seed=3, weight_decay_lambda=0.1)
        expected = net.loss(x, t)
        tr = Trainer(net, x, t, xt, tt, epochs=1, mini_batch_size=120, verbose=False, seed=0,
                     sampling="epoch")
        tr.train_step()
        assert tr.train_loss_list == [pytest.approx(expected, rel=1e-12)]


def test_evaluate_sample_num_per_epoch():
    x, t = index_data(50)
    net = RecordingNet()
    tr = Trainer(net, x, t, x[:30], t[:30], epochs=2, mini_batch_size=10,
                 evaluate_sample_num_per_epoch=7, verbose=False)
    tr.train()
    # per epoch: train and test on the first 7 samples; then the whole test set once
    assert net.evaluated == [7, 7, 7, 7, 30]


def test_accuracy_measured_in_chunks(digits, monkeypatch):
    """Large evaluation sets go through the network in bounded chunks; the result is the same."""
    from fastmlp import trainer as trainer_module
    x, t, xt, tt = small(digits, n_train=300, n_test=300)
    net = CompiledNet(64, [20], 10, seed=0)
    monkeypatch.setattr(trainer_module, "EVAL_CHUNK_ROWS", 64)
    tr = Trainer(net, x, t, xt, tt, epochs=1, mini_batch_size=30, verbose=False, sampling="epoch")
    tr.train()
    assert tr.train_acc_list == [net.accuracy(x, t)]
    assert tr.test_acc_list == [net.accuracy(xt, tt)]


def test_fused_train_step_is_preferred():
    x, t = index_data(20)
    net = RecordingNet(fused=True)
    tr = Trainer(net, x, t, x, t, epochs=2, mini_batch_size=5, verbose=False)
    tr.train()
    assert net.gradient_calls == 0 and len(net.batches) == 8
    np.testing.assert_allclose(net.params["W1"], -8 * 0.01)
    assert tr.train_loss_list == [0.25] * 8


def test_float_data_kept_in_its_dtype_and_inputs_untouched(digits):
    (x, t), (xt, tt) = digits  # float32 pixels, uint8 labels
    x, xt = x[:200], xt[:50]
    t, tt = t[:200], tt[:50]
    x_ro = x.copy()
    x_ro.flags.writeable = False
    originals = [a.copy() for a in (x_ro, t, xt, tt)]
    net = CompiledNet(64, [10], 10, seed=0)  # float64
    tr = Trainer(net, x_ro, t, np.asfortranarray(xt), tt, epochs=1, mini_batch_size=50, verbose=False)
    # float data is not copied whole into the network's dtype: batches are converted as drawn
    assert tr.x_train is x_ro and tr.x_test.dtype == np.float32
    assert tr.x_train.flags.c_contiguous and tr.x_test.flags.c_contiguous
    x_batch, _ = tr._next_batch()
    assert x_batch.dtype == np.float64
    assert tr.t_train.dtype == np.intp
    tr.train()
    for a, b in zip((x_ro, t, xt, tt), originals):
        np.testing.assert_array_equal(a, b)
    assert not x_ro.flags.writeable
    # integer data is converted once, to the network's dtype
    tri = Trainer(net, (x_ro * 16).astype(np.int16), t, xt, tt, epochs=1, mini_batch_size=50,
                  verbose=False)
    assert tri.x_train.dtype == np.float64 and tri.x_train.flags.c_contiguous
    # float32 network: the float32 data is used as is, no copy
    net32 = CompiledNet(64, [10], 10, seed=0, dtype=np.float32)
    x32 = np.ascontiguousarray(x)
    tr32 = Trainer(net32, x32, t, xt, tt, epochs=1, mini_batch_size=50, verbose=False)
    assert tr32.x_train is x32


def test_one_hot_targets(digits):
    (x, t), (xt, tt) = digits
    eye = np.eye(10, dtype=np.float32)
    net = CompiledNet(64, [20], 10, seed=0)
    tr = Trainer(net, x[:300], eye[t[:300]], xt[:100], eye[tt[:100]], epochs=2, mini_batch_size=30,
                 optimizer="adam", optimizer_param={"lr": 0.01}, verbose=False, seed=0,
                 sampling="epoch")
    assert tr.train() == tr.test_acc_list[-1] > 0.5


def test_train_is_resumable_and_stops_at_max_iter():
    x, t = index_data(20)
    tr = Trainer(RecordingNet(), x, t, x, t, epochs=2, mini_batch_size=5, verbose=False)
    for _ in range(3):
        tr.train_step()
    tr.train()
    assert tr.current_iter == tr.max_iter == 8
    tr.train()
    assert tr.current_iter == 8 and len(tr.test_acc_list) == 2


# ---------------------------------------------------------------- output


def test_verbose_output(digits, capsys):
    x, t, xt, tt = small(digits, n_train=100)
    Trainer(ReferenceNet(64, [10], 10, seed=0), x, t, xt, tt, epochs=2, mini_batch_size=50,
            verbose=True).train()
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith("=== epoch:1, train acc:") and lines[0].endswith(" ===")
    assert ", test acc:" in lines[0]
    assert lines[1].startswith("=== epoch:2, ")
    assert lines[2] == "=============== Final Test Accuracy ==============="
    assert lines[3].startswith("test acc:")
    assert err == ""  # no progress bar when stderr is not a terminal


def test_quiet(digits, capsys):
    x, t, xt, tt = small(digits, n_train=100)
    Trainer(ReferenceNet(64, [10], 10, seed=0), x, t, xt, tt, epochs=2, mini_batch_size=50,
            verbose=False).train()
    assert capsys.readouterr() == ("", "")


# ---------------------------------------------------------------- divergence


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("net_class", NETS)
def test_divergence_names_the_step_and_keeps_last_good_params(digits, net_class, dtype):
    """Weight decay with a huge step size: |W| grows geometrically until the loss overflows."""
    x, t, xt, tt = small(digits, n_train=200, n_test=50)
    net = net_class(64, [20], 10, seed=0, dtype=dtype, weight_decay_lambda=1.0)
    tr = Trainer(net, x, t, xt, tt, epochs=100, mini_batch_size=20, optimizer="Momentum",
                 optimizer_param={"lr": 10.0, "momentum": 0.5}, verbose=False, seed=0,
                 sampling="epoch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow warnings on the way
        with pytest.raises(DivergenceError) as info:
            for _ in range(tr.max_iter):
                params, state = snapshot(net.params), snapshot(tr.optimizer.v or {})
                tr.train_step()
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.step == tr.current_iter + 1 == len(tr.train_loss_list) + 1 > 2
    assert err.epoch == tr.current_epoch + 1
    assert not math.isfinite(err.loss)
    assert f"at step {err.step} (epoch {err.epoch})" in str(err)
    assert "diverged" in str(err) and ("nan" in str(err) or "inf" in str(err))
    assert all(math.isfinite(v) for v in tr.train_loss_list)
    assert_params_bitwise(net.params, params)  # the failing update was not applied
    assert_params_bitwise(tr.optimizer.v, state)
    with warnings.catch_warnings():  # train() raises the same way, and keeps the params too
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(FloatingPointError, match=r"the loss became (nan|inf) at step \d+"):
            tr.train()
    assert_params_bitwise(net.params, params)


def test_divergence_through_fused_step():
    x, t = index_data(20)
    net = RecordingNet(fused=True, loss_value=float("nan"))
    tr = Trainer(net, x, t, x, t, epochs=1, mini_batch_size=5, verbose=False)
    with pytest.raises(DivergenceError, match="step 1 "):
        tr.train()
    np.testing.assert_array_equal(net.params["W1"], 0)
    assert tr.current_iter == 0 and tr.train_loss_list == []


# ---------------------------------------------------------------- bad input


def _bad_cases(x, t, xt, tt):
    nan_x = x.copy()
    nan_x[3, 5] = np.nan
    inf_xt = xt.copy()
    inf_xt[0, 0] = np.inf
    bad_labels = t.copy().astype(int)
    bad_labels[7] = 10
    return [
        (dict(x_train=x[0]), ValueError, r"x_train.*x_train\[None\]"),
        (dict(x_train=nan_x), ValueError, "x_train contains NaN"),
        (dict(x_test=inf_xt), ValueError, "x_test contains NaN or inf"),
        (dict(x_train=x + 1j), TypeError, "x_train"),
        (dict(x_train="data"), TypeError, "x_train"),
        (dict(x_train=x[:, :60]), ValueError, "x_train has 60 features.*input_size=64"),
        (dict(x_test=xt[:, :10]), ValueError, "x_test has 10 features"),
        (dict(t_train=t[:-1]), ValueError, "t_train has"),
        (dict(t_train=bad_labels), ValueError, r"t_train labels must lie in \[0, 10\)"),
        (dict(t_test=np.eye(9)[tt % 9]), ValueError, "t_test one-hot rows must have width 10"),
        (dict(x_train=x[:0], t_train=t[:0]), ValueError, "x_train must not be empty"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(epochs=2.5), TypeError, "epochs"),
        (dict(mini_batch_size=0), ValueError, "mini_batch_size"),
        (dict(mini_batch_size=301), ValueError, r"mini_batch_size \(301\) exceeds.*\(300\)"),
        (dict(optimizer="adamw"), ValueError, "optimizer must be one of"),
        (dict(optimizer=3), TypeError, "optimizer"),
        (dict(optimizer_param={"lr": -1}), ValueError, "lr must be finite and > 0"),
        (dict(optimizer_param={"lr": 0.1, "beta": 0.9}), TypeError, "optimizer_param"),
        (dict(optimizer_param=[0.1]), TypeError, "optimizer_param must be a dict"),
        (dict(optimizer=optimizers.SGD(), optimizer_param={"lr": 1}), ValueError, "optimizer_param"),
        (dict(lr_decay=0), ValueError, "lr_decay"),
        (dict(lr_decay=1.5), ValueError, r"lr_decay must be in \(0, 1\]"),
        (dict(lr_decay=float("nan")), ValueError, "lr_decay"),
        (dict(evaluate_sample_num_per_epoch=0), ValueError, "evaluate_sample_num_per_epoch"),
        (dict(seed="abc"), TypeError, "seed"),
        (dict(seed=1.5), TypeError, "seed"),
        (dict(verbose="yes"), TypeError, "verbose"),
    ]


def test_bad_input_raises_naming_the_argument(digits):
    x, t, xt, tt = small(digits)
    net = CompiledNet(64, [10], 10, seed=0)
    before = snapshot(net.params)
    inputs = [a.copy() for a in (x, t, xt, tt)]
    base = dict(network=net, x_train=x, t_train=t, x_test=xt, t_test=tt, verbose=False)
    for override, exc, match in _bad_cases(x, t, xt, tt):
        with pytest.raises(exc, match=match):
            Trainer(**{**base, **override})
        assert_params_bitwise(net.params, before)
    for a, b in zip((x, t, xt, tt), inputs):
        np.testing.assert_array_equal(a, b)
    Trainer(**base)  # and the valid call still works


def test_bad_network():
    x, t = index_data(10)
    for network, match in [(object(), "params"), (RecordingNet.__new__(RecordingNet), "params")]:
        with pytest.raises(TypeError, match=match):
            Trainer(network, x, t, x, t)

    class NoGradient:
        params = {"W1": np.zeros((1, 2))}

        def accuracy(self, x, t):
            return 0.0

    with pytest.raises(TypeError, match=r"network must have gradient\(x, t\)"):
        Trainer(NoGradient(), x, t, x, t)
    regressor = CompiledNet(1, [3], 2, loss="mse")
    with pytest.raises(TypeError, match="loss='mse'.*needs a classifier"):
        Trainer(regressor, x, np.eye(2)[t], x, np.eye(2)[t])


def test_optimizer_object_accepted():
    x, t = index_data(10)
    opt = optimizers.Nesterov(lr=0.5)
    tr = Trainer(RecordingNet(), x, t, x, t, epochs=1, mini_batch_size=5, optimizer=opt,
                 lr_decay=0.5, verbose=False, sampling="epoch")
    tr.train()
    assert tr.optimizer is opt and opt.lr == 0.25
