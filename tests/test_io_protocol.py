"""Persistence as a protocol: io writes networks, optimizers and estimators through their
public methods (config/from_config, state_dict/load_state_dict, to_record/from_record)."""
import pickle
import subprocess
import sys
import tempfile
import textwrap
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import optimizers
from fastmlp.io import load, save


def _net():
    return fastmlp.MultiLayerNet(4, [3], 2, seed=0)


@pytest.mark.parametrize("opt", [optimizers.Adam(0.01, eps=1e-3),
                                 optimizers.Nesterov(0.1, 0.5, variant="sklearn")],
                         ids=["adam-eps", "sklearn-nesterov"])
def test_network_file_refuses_an_optimizer_its_format_cannot_hold(tmp_path, opt):
    """A network file (format 1) holds the book's rules: Adam with eps=1e-7, the book's
    Nesterov. Anything else is refused at save, not silently changed."""
    with pytest.raises(TypeError, match="eps|variant"):
        save(_net(), tmp_path / "n.fmlp", optimizer=opt)
    assert not list(tmp_path.iterdir())


def _same_state(a, b):
    """Two optimizers' state dicts equal bit for bit (hyper-parameters, step count, arrays)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and sa["hyper"] == sb["hyper"]
    assert sa.get("iter") == sb.get("iter") and sa["state"].keys() == sb["state"].keys()
    for slot, arrays in sa["state"].items():
        assert arrays.keys() == sb["state"][slot].keys()
        assert all(v.tobytes() == sb["state"][slot][k].tobytes() for k, v in arrays.items())


def test_book_adam_and_nesterov_round_trip(tmp_path):
    for opt in (optimizers.Adam(0.01, eps=1e-7), optimizers.Nesterov(0.1, 0.5, variant="book")):
        net = _net()
        for _ in range(2):   # a state worth saving: moments, velocities, Adam's step count
            opt.update(net.params, {k: np.full_like(v, 0.25) for k, v in net.params.items()})
        assert opt.state_dict()["state"]
        save(net, tmp_path / "n.fmlp", optimizer=opt)
        _, back = load(tmp_path / "n.fmlp", with_optimizer=True)
        assert type(back) is type(opt)
        _same_state(back, opt)


def test_saving_and_loading_a_network_imports_no_estimator():
    code = textwrap.dedent("""
        import os, sys, tempfile
        import fastmlp
        path = os.path.join(tempfile.mkdtemp(), "n.fmlp")
        fastmlp.save(fastmlp.MultiLayerNet(3, [2], 2), path, optimizer=fastmlp.optimizers.Adam())
        fastmlp.load(path, with_optimizer=True)
        print(sorted(m for m in sys.modules if m == "fastmlp.estimator" or m.startswith("sklearn")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tempfile.gettempdir(), check=True).stdout
    assert out.strip() == "[]"


def _fitted(**kw):
    pytest.importorskip("sklearn")
    from fastmlp.estimator import MLPClassifier
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), np.arange(30) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, **kw).fit(X, y), X


@pytest.mark.parametrize("kw", [{}, {"solver": "sgd", "momentum": 0.8}], ids=["adam", "nesterov"])
def test_estimator_record_methods_round_trip(kw):
    est, X = _fitted(**kw)
    arrays = {}
    rec = est.to_record(arrays)
    needed = type(est).check_record(rec)
    assert set(needed) == set(arrays)
    back = type(est).from_record(rec, arrays)
    assert back.predict_proba(X).tobytes() == est.predict_proba(X).tobytes()
    assert est._optimizer.state_dict()["state"]   # fitted: there is state to carry over
    _same_state(back._optimizer, est._optimizer)


def test_pickle_from_before_network_configs_still_loads():
    """Pickles made before networks had config() hold a config without weight_decay_lambda."""
    est, X = _fitted()
    state = est.__getstate__()
    state["_net_state"]["config"].pop("weight_decay_lambda")
    clone = type(est).__new__(type(est))
    clone.__setstate__(pickle.loads(pickle.dumps(state)))
    assert clone.predict_proba(X).tobytes() == est.predict_proba(X).tobytes()
