"""Format version 1 files (ZIP archives written by fastmlp before persistence became a
protocol, commit 41a6801) still load bit for bit, and what they hold saves to a version 2
file (safetensors) that loads bit for bit too.

``tests/data/io_v1/`` holds small files written by that code, and ``manifest.json``
what its ``load`` gave back (SHA-256 of every parameter and state array, the
hyper-parameters, counters and histories). Regenerate them only with the old code::

    git clone -q . /tmp/io-old && cd /tmp/io-old && git checkout -q 41a6801 && \\
        python setup.py build_ext --inplace -q && cd - && \\
        PYTHONPATH=/tmp/io-old python tests/test_io_compat.py tests/data/io_v1
"""
import hashlib
import json
import pathlib
import sys
import warnings

import numpy as np

DATA = pathlib.Path(__file__).parent / "data" / "io_v1"
DATA_V2 = pathlib.Path(__file__).parent / "data" / "io_v2"   # the same models, format 2

NETWORK_FILES = ["net_multi_adam_f32", "net_two_momentum_f64", "net_ref_rmsprop",
                 "net_mse_nesterov_fresh", "net_ref_two_adam", "net_adagrad", "net_ref_sgd",
                 "net_plain"]
ESTIMATOR_FILES = ["est_clf_adam_str", "est_clf_sgd_nesterov_es", "est_reg_sgd_invscaling",
                   "est_reg_rmsprop_f32"]


def _digest(a):
    return [np.asarray(a).dtype.str, list(np.shape(a)), hashlib.sha256(np.asarray(a).tobytes()).hexdigest()]


def _optimizer_kind(opt):
    """``implementation:rule``; the old estimator's private classes are the rules they ran."""
    impl = "reference" if ".reference" in type(opt).__module__ else "compiled"
    name = type(opt).__name__
    if name == "_SGDNesterov" or getattr(opt, "variant", "book") == "sklearn":
        return f"{impl}:SGDNesterov"
    return f"{impl}:{name.lstrip('_')}"


def describe(model, optimizer=None):
    """What a loaded model holds, as JSON-able values (public attributes only)."""
    if hasattr(model, "coefs_"):        # an estimator
        out = {"class": type(model).__name__,
               "coefs": [_digest(a) for a in model.coefs_],
               "intercepts": [_digest(a) for a in model.intercepts_]}
        for name in ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "validation_scores_",
                     "validation_loss_curve_", "best_validation_score_", "n_features_in_",
                     "n_outputs_", "n_layers_", "out_activation_"):
            value = getattr(model, name)
            out[name] = repr(value)
        if hasattr(model, "classes_"):
            out["classes"] = [model.classes_.dtype.str, [str(c) for c in model.classes_]]
        later = {"dropout": 0.0, "batch_norm": False, "max_fun": 15000}   # newer than the files
        out["params"] = {k: repr(v) for k, v in sorted(model.get_params().items())
                         if (k != "random_state" or isinstance(v, (int, type(None))))
                         and not (k in later and v == later[k])}
        opt = model._optimizer
        if opt is not None:
            out["optimizer"] = describe_optimizer(opt)
            eps = opt.__dict__.get("epsilon", opt.__dict__.get("eps"))
            if "Adam" in type(opt).__name__:
                out["optimizer"]["eps"] = repr(eps)
        return out
    impl = "reference" if ".reference" in type(model).__module__ else "compiled"
    out = {"class": f"{impl}:{type(model).__name__}",
           "dtype": np.dtype(model.dtype).name,
           "params": {k: _digest(v) for k, v in model.params.items()},
           "optimizer": None if optimizer is None else describe_optimizer(optimizer)}
    for name in ("activation", "weight_decay_lambda", "loss_name"):
        if hasattr(model, name):
            out[name] = repr(getattr(model, name))
    return out


def describe_optimizer(opt):
    out = {"kind": _optimizer_kind(opt)}
    for name in ("lr", "momentum", "decay_rate", "beta1", "beta2", "iter"):
        if hasattr(opt, name):
            out[name] = repr(getattr(opt, name))
    for slot in ("m", "v", "h"):
        value = getattr(opt, slot, None)
        if isinstance(value, dict):
            out[slot] = {k: _digest(a) for k, a in value.items()}
    return out


# ----------------------------------------------------------------------------- the tests

def _manifest():
    return json.loads((DATA / "manifest.json").read_text())


def _is_v2(path):
    return path.read_bytes()[:2] != b"PK"


def test_old_network_files_load_bit_for_bit_and_resave_as_v2(tmp_path):
    from fastmlp.io import load, save
    manifest = _manifest()
    for name in NETWORK_FILES:
        path = DATA / f"{name}.fmlp"
        net, opt = load(path, with_optimizer=True)
        assert describe(net, opt) == manifest[name], name
        save(net, tmp_path / name, optimizer=opt)
        assert _is_v2(tmp_path / name)
        assert describe(*load(tmp_path / name, with_optimizer=True)) == manifest[name], name


def test_old_estimator_files_load_bit_for_bit_and_resave_as_v2(tmp_path):
    import pickle

    import pytest
    pytest.importorskip("sklearn")
    from fastmlp.io import load, save
    manifest = _manifest()
    for name in ESTIMATOR_FILES:
        path = DATA / f"{name}.fmlp"
        est = load(path)
        assert describe(est) == manifest[name], name
        save(est, tmp_path / name)
        assert _is_v2(tmp_path / name)
        assert describe(load(tmp_path / name)) == manifest[name], name
        # a pickled copy holds the same model: it saves the same bytes
        save(pickle.loads(pickle.dumps(est)), tmp_path / f"{name}.pickled")
        assert (tmp_path / f"{name}.pickled").read_bytes() == (tmp_path / name).read_bytes()


def test_format_2_files_of_the_first_release_load_bit_for_bit():
    """``tests/data/io_v2``: the version 1 files saved by the first fastmlp that wrote
    format 2 (``python tests/test_io_compat.py --v2 tests/data/io_v2``); a later change to
    the writer must still read them."""
    import pytest
    from fastmlp.io import load
    manifest = _manifest()
    for name in NETWORK_FILES + ESTIMATOR_FILES:
        if name in ESTIMATOR_FILES:
            pytest.importorskip("sklearn")
        path = DATA_V2 / f"{name}.safetensors"
        assert _is_v2(path), name
        got = (describe(*load(path, with_optimizer=True)) if name in NETWORK_FILES
               else describe(load(path)))
        assert got == manifest[name], name


def test_the_same_objects_hold_the_same_model_in_both_versions(tmp_path):
    """Networks and optimizers built afresh (no training: nothing BLAS-dependent) hold what
    the old code's files hold, and save the same bytes every time."""
    from fastmlp.io import load, save
    manifest = _manifest()
    for name, (net, opt) in _fresh_networks().items():
        save(net, tmp_path / name, optimizer=opt)
        save(net, tmp_path / f"{name}.again", optimizer=opt)
        assert (tmp_path / name).read_bytes() == (tmp_path / f"{name}.again").read_bytes()
        assert describe(*load(tmp_path / name, with_optimizer=True)) == manifest[name], name


# ----------------------------------------------------------------------------- the files

def _state(params, slots, seed, dtype=None):
    rng = np.random.default_rng(seed)
    out = []
    for _ in slots:
        out.append({k: rng.normal(size=p.shape).astype(dtype or p.dtype)
                    for k, p in params.items()})
    return out


def _fresh_networks():
    import fastmlp
    from fastmlp import optimizers, reference
    from fastmlp.reference import optimizers as ref_opt
    nets = {}

    net = fastmlp.MultiLayerNet(4, [3], 2, activation="sigmoid", weight_decay_lambda=0.25,
                                dtype=np.float32, seed=1)
    opt = optimizers.Adam(0.01, 0.8, 0.99)
    opt.m, opt.v = _state(net.params, "mv", 1)
    opt.iter = 5
    nets["net_multi_adam_f32"] = net, opt

    net = fastmlp.TwoLayerNet(3, 4, 2, dtype=np.float64, seed=2)
    opt = optimizers.Momentum(0.1, 0.8)
    (opt.v,) = _state(net.params, "v", 2)
    nets["net_two_momentum_f64"] = net, opt

    net = reference.MultiLayerNet(3, [2, 2], 2, seed=3)
    opt = ref_opt.RMSprop(0.01, 0.9)
    (opt.h,) = _state(net.params, "h", 3)
    nets["net_ref_rmsprop"] = net, opt

    net = fastmlp.MultiLayerNet(3, [2], 1, dtype=np.float64, seed=4, loss="mse")
    nets["net_mse_nesterov_fresh"] = net, optimizers.Nesterov(0.05, 0.5)

    net = reference.TwoLayerNet(2, 3, 2, dtype=np.float32, seed=5)
    opt = ref_opt.Adam(0.002)
    opt.m, opt.v = _state(net.params, "mv", 5)
    opt.iter = 12
    nets["net_ref_two_adam"] = net, opt

    net = fastmlp.MultiLayerNet(2, [3, 2], 3, weight_decay_lambda=1e-3, seed=6)
    opt = optimizers.AdaGrad(0.3)
    (opt.h,) = _state(net.params, "h", 6)
    nets["net_adagrad"] = net, opt

    net = reference.MultiLayerNet(2, [2], 2, activation="sigmoid", seed=7, dtype=np.float32)
    nets["net_ref_sgd"] = net, ref_opt.SGD(0.5)

    nets["net_plain"] = fastmlp.MultiLayerNet(3, [], 2, seed=8), None
    return nets


def _fitted_estimators():
    from fastmlp.estimator import MLPClassifier, MLPRegressor
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.arange(40) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield "est_clf_adam_str", MLPClassifier(hidden_layer_sizes=(4,), max_iter=3,
                                                random_state=0, epsilon=1e-6).fit(
            X, np.array(["ant", "bee", "cow"])[y])
        yield "est_clf_sgd_nesterov_es", MLPClassifier(
            hidden_layer_sizes=(3, 2), solver="sgd", momentum=0.8, early_stopping=True,
            n_iter_no_change=np.inf, max_iter=6, random_state=1, dtype=np.float32).fit(X, y + 5)
        yield "est_reg_sgd_invscaling", MLPRegressor(
            hidden_layer_sizes=(4,), solver="sgd", momentum=0.0, learning_rate="invscaling",
            alpha=0.5, activation="logistic", max_iter=4, random_state=2).fit(
            X, X[:, :2], X_val=X[:8], y_val=X[:8, :2])
        yield "est_reg_rmsprop_f32", MLPRegressor(
            hidden_layer_sizes=(2,), solver="rmsprop", max_iter=3, random_state=3).fit(
            X.astype(np.float32), X[:, 0])


def _write(directory):
    """Only with the old code (see the module docstring): today's save writes version 2."""
    from fastmlp.io import load, save
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for name, (net, opt) in _fresh_networks().items():
        save(net, directory / f"{name}.fmlp", optimizer=opt)
        manifest[name] = describe(*load(directory / f"{name}.fmlp", with_optimizer=True))
    for name, est in _fitted_estimators():
        save(est, directory / f"{name}.fmlp")
        manifest[name] = describe(load(directory / f"{name}.fmlp"))
    lines = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(manifest.items())]
    (directory / "manifest.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")


def _write_v2(directory):
    """The version 1 files, loaded and saved by this fastmlp (format 2)."""
    from fastmlp.io import load, save
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in NETWORK_FILES:
        net, opt = load(DATA / f"{name}.fmlp", with_optimizer=True)
        save(net, directory / f"{name}.safetensors", optimizer=opt)
    for name in ESTIMATOR_FILES:
        save(load(DATA / f"{name}.fmlp"), directory / f"{name}.safetensors")


if __name__ == "__main__":
    if sys.argv[1] == "--v2":
        _write_v2(sys.argv[2])
    else:
        _write(sys.argv[1])
