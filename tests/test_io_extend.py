"""fastmlp.save / load of MultiLayerNetExtend (compiled and reference): bitwise round trips
with the batch-norm running statistics, and clear errors for tampered files.

A running statistic read from a file must have the network's dtype and the layer's
shape, be finite, and (running_var) be non-negative: a negative or NaN variance is
refused (the book's running variance is a mean of squares, never negative).
"""
import numpy as np
import pytest

import fastmlp
from fastmlp import optimizers, reference
from fastmlp.io import load, save

from _model_files import read, spec, write

IMPLS = {"compiled": fastmlp.MultiLayerNetExtend, "reference": reference.MultiLayerNetExtend}


def _data(n=24, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, c, n)


def _net(impl="compiled", dtype=np.float64, use_batchnorm=True, use_dropout=True,
         activation="relu", steps=3, opt=None):
    net = IMPLS[impl](6, [5, 4], 3, activation=activation, weight_decay_lambda=0.01,
                      use_dropout=use_dropout, dropout_ration=0.25,
                      use_batchnorm=use_batchnorm, dtype=dtype, seed=7)
    x, t = _data()
    opt = opt or optimizers.SGD(0.05)
    for _ in range(steps):
        opt.update(net.params, net.gradient(x, t))
    return net, opt


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("use_batchnorm", [True, False])
@pytest.mark.parametrize("use_dropout", [True, False])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_round_trip(tmp_path, impl, dtype, use_batchnorm, use_dropout, activation):
    net, _ = _net(impl, dtype, use_batchnorm, use_dropout, activation)
    save(net, tmp_path / "n.fmlp")
    got = load(tmp_path / "n.fmlp")
    assert type(got) is type(net)
    assert got.config() == net.config()
    assert list(got.params) == list(net.params)
    for k in net.params:
        assert _same(got.params[k], net.params[k]), k
    stats, got_stats = net.running_statistics(), got.running_statistics()
    assert len(stats) == len(got_stats) == (2 if use_batchnorm else 0)
    for (m, v), (gm, gv) in zip(stats, got_stats):
        assert _same(gm, m) and _same(gv, v)
    x, _ = _data(n=9, seed=3)
    assert _same(got.predict(x, train_flg=False), net.predict(x, train_flg=False))


@pytest.mark.parametrize("impl", list(IMPLS))
def test_before_any_forward_pass(tmp_path, impl):
    net, _ = _net(impl, steps=0)
    save(net, tmp_path / "n.fmlp")
    got = load(tmp_path / "n.fmlp")
    assert got.running_statistics() == [(None, None), (None, None)]
    x, _ = _data(n=5)
    assert _same(got.predict(x), net.predict(x))


@pytest.mark.parametrize("impl", list(IMPLS))
def test_with_optimizer(tmp_path, impl):
    mod = optimizers if impl == "compiled" else reference.optimizers
    net, opt = _net(impl, opt=mod.Adam(0.01))
    save(net, tmp_path / "n.fmlp", optimizer=opt)
    got, got_opt = load(tmp_path / "n.fmlp", with_optimizer=True)
    assert type(got_opt) is type(opt)
    d, got_d = opt.state_dict(), got_opt.state_dict()
    assert got_d["iter"] == d["iter"] > 0
    assert set(got_d["state"]) == set(d["state"]) == {"m", "v"}
    for s in d["state"]:
        assert list(got_d["state"][s]) == list(net.params)
        for k in net.params:
            assert _same(got_d["state"][s][k], d["state"][s][k]), (s, k)
    # training resumes exactly
    x, t = _data(seed=5)
    net.set_stream(11)
    got.set_stream(11)
    opt.update(net.params, net.gradient(x, t))
    got_opt.update(got.params, got.gradient(x, t))
    for k in net.params:
        assert _same(got.params[k], net.params[k]), k


# ----------------------------------------------------------------------------- tampered files

def _rewrite(src, dst, edit):
    """Copy the file ``src`` to ``dst`` through ``edit(header, arrays)``, checksums renewed."""
    header, arrays, version = read(src)
    edit(header, arrays)
    header["arrays"] = {n: spec(a) for n, a in arrays.items()}
    return write(dst, header, {n: np.ascontiguousarray(a) for n, a in arrays.items()}, version)


@pytest.fixture
def saved(tmp_path):
    net, _ = _net("compiled")
    save(net, tmp_path / "n.fmlp")
    return tmp_path / "n.fmlp"


def test_untouched_rewrite_loads(saved, tmp_path):
    _rewrite(saved, tmp_path / "same.fmlp", lambda h, a: None)
    load(tmp_path / "same.fmlp")


def _set(name, value):
    def edit(header, arrays):
        arrays[name] = value(arrays[name])
    return edit


def _drop_array(name):
    def edit(header, arrays):
        del arrays[name]
    return edit


def _drop_gamma(header, arrays):
    del arrays["network/gamma1"]
    header["model"]["params"].remove("gamma1")


def _extra_stat(header, arrays):
    arrays["network/running_var3"] = np.ones(4)


def _unlisted_stat(header, arrays):
    header["model"]["running"].remove("running_var2")


def _duplicated_stat(header, arrays):
    header["model"]["running"].append("running_var2")


def _no_running_entry(header, arrays):
    del header["model"]["running"]


def _not_a_flag(header, arrays):
    header["model"]["config"]["use_batchnorm"] = 1


def _bad_ratio(header, arrays):
    header["model"]["config"]["dropout_ration"] = 1.5


TAMPERED = {
    "wrong-shape": (_set("network/running_var1", lambda a: a[:-1]), "running_var1"),
    "wrong-dtype": (_set("network/running_mean2", lambda a: a.astype(np.float32)),
                    "running_mean2"),
    "negative-var": (_set("network/running_var2", lambda a: a - 10.0), "running_var2"),
    "nan-var": (_set("network/running_var1", lambda a: np.where(np.arange(a.size) == 1,
                                                                 np.nan, a)), "running_var1"),
    "inf-mean": (_set("network/running_mean1", lambda a: a + np.inf), "running_mean1"),
    "missing-var-array": (_drop_array("network/running_var2"), "running_var2"),
    "missing-gamma-array": (_drop_array("network/gamma1"), "gamma1"),
    "missing-gamma": (_drop_gamma, r"missing \['gamma1'\]"),
    "extra-stat": (_extra_stat, "running_var3"),
    "unlisted-stat": (_unlisted_stat, "running_var2"),
    "duplicated-stat": (_duplicated_stat, "running_var2"),
    "no-running-entry": (_no_running_entry, "running"),
    "flag-not-bool": (_not_a_flag, "use_batchnorm"),
    "ratio-out-of-range": (_bad_ratio, "dropout_ration"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_tampered_file_is_refused(saved, tmp_path, case):
    edit, entry = TAMPERED[case]
    bad = _rewrite(saved, tmp_path / "bad.fmlp", edit)
    with pytest.raises(ValueError, match=entry) as info:
        load(bad)
    assert str(bad) in str(info.value)


def test_save_refuses_statistics_load_would_refuse(tmp_path):
    net, _ = _net("reference")
    (m1, v1), second = net.running_statistics()
    net.set_running_statistics([(m1, v1 - 100.0), second])
    with pytest.raises(ValueError, match="running_var1"):
        save(net, tmp_path / "n.fmlp")
    assert not list(tmp_path.iterdir())


def test_estimator_records_still_refuse_extended_networks():
    from fastmlp._records import network_plan
    net, _ = _net("compiled")
    rec = {"class": "MultiLayerNetExtend", "implementation": "compiled",
           "config": net.config(), "params": list(net.params), "running": []}
    with pytest.raises(ValueError, match="unknown (network class|entries)"):
        network_plan(rec)
