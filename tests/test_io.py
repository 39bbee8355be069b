"""fastmlp.io.save / load: bitwise round trips, and a clear ValueError for every damaged file."""
import hashlib
import json
import pickle
import warnings
import zipfile

import numpy as np
import pytest

import fastmlp
from fastmlp import optimizers, reference
from fastmlp.io import FORMAT_VERSION, load, save
from fastmlp.reference import optimizers as ref_optimizers

from _model_files import V1_NETWORK, canonical, read, rewrite, version_of

DTYPES = [np.float32, np.float64]


def _data(n=20, d=6, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, c, n)


def _trained(net, steps=3, opt=None):
    x, t = _data(d=net.input_size, c=net.output_size)
    opt = opt or optimizers.Adam(0.01)
    for _ in range(steps):
        opt.update(net.params, net.gradient(x, t))
    return net, opt


NETWORKS = {
    "compiled-multi": lambda dt: fastmlp.MultiLayerNet(6, [5, 4], 3, activation="sigmoid",
                                                       weight_decay_lambda=0.1, dtype=dt, seed=1),
    "compiled-two": lambda dt: fastmlp.TwoLayerNet(6, 5, 3, dtype=dt, seed=2),
    "reference-multi": lambda dt: reference.MultiLayerNet(6, [5], 3, dtype=dt, seed=3),
    "reference-two": lambda dt: reference.TwoLayerNet(6, 4, 3, dtype=dt, seed=4),
    "compiled-mse": lambda dt: fastmlp.MultiLayerNet(6, [5], 3, dtype=dt, seed=5, loss="mse"),
}


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_network_round_trip_is_bitwise(tmp_path, kind, dtype):
    net = NETWORKS[kind](dtype)
    if kind != "compiled-mse":
        _trained(net)
    path = tmp_path / "net.fmlp"
    save(net, path)
    back = load(path)
    assert type(back) is type(net) and back.dtype == net.dtype
    assert back.params.keys() == net.params.keys()
    for k in net.params:
        assert back.params[k].dtype == net.params[k].dtype
        assert back.params[k].shape == net.params[k].shape
        np.testing.assert_array_equal(back.params[k], net.params[k])
    x, _ = _data(d=6)
    assert net.predict(x).tobytes() == back.predict(x).tobytes()
    assert getattr(back, "activation", None) == getattr(net, "activation", None)
    assert getattr(back, "weight_decay_lambda", 0) == getattr(net, "weight_decay_lambda", 0)
    assert load(path, with_optimizer=True)[1] is None


@pytest.mark.parametrize("name", ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"])
@pytest.mark.parametrize("module", [optimizers, ref_optimizers], ids=["compiled", "reference"])
def test_optimizer_state_round_trip_resumes_exactly(tmp_path, module, name):
    opt = getattr(module, name)(lr=0.05)
    net, opt = _trained(fastmlp.MultiLayerNet(6, [5], 3, seed=0), opt=opt)
    save(net, tmp_path / "n.fmlp", optimizer=opt)
    net2, opt2 = load(tmp_path / "n.fmlp", with_optimizer=True)
    assert type(opt2) is type(opt) and opt2.lr == opt.lr
    assert getattr(opt2, "iter", None) == getattr(opt, "iter", None)
    _trained(net, 2, opt)
    _trained(net2, 2, opt2)
    for k in net.params:
        np.testing.assert_array_equal(net.params[k], net2.params[k])


def test_fresh_optimizer_without_state(tmp_path):
    net = fastmlp.MultiLayerNet(6, [5], 3, seed=0)
    save(net, tmp_path / "n.fmlp", optimizer=optimizers.Momentum(0.1, 0.5))
    _, opt = load(tmp_path / "n.fmlp", with_optimizer=True)
    assert isinstance(opt, optimizers.Momentum) and opt.v is None and opt.momentum == 0.5


def test_save_rejects_what_it_cannot_hold(tmp_path):
    class Sub(fastmlp.MultiLayerNet):
        pass

    with pytest.raises(TypeError, match="MultiLayerNet"):
        save(Sub(3, [2], 2), tmp_path / "x")
    with pytest.raises(TypeError, match="MultiLayerNet"):
        save({"W1": np.zeros(3)}, tmp_path / "x")
    with pytest.raises(TypeError, match="optimizer"):
        save(fastmlp.MultiLayerNet(3, [2], 2), tmp_path / "x", optimizer=object())
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_file_is_deterministic(tmp_path):
    net = NETWORKS["compiled-multi"](np.float64)
    save(net, tmp_path / "a")
    save(net, tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


# ----------------------------------------------------------------------------- estimators

def _estimators():
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning

    from fastmlp.estimator import MLPClassifier, MLPRegressor
    X, y = _data(60, 5, 3, seed=1)
    labels = np.array(["ant", "bee", "cow"])[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield "clf-str", MLPClassifier(hidden_layer_sizes=[7, 5], max_iter=5, random_state=0).fit(
            X, labels), X, labels
        yield "clf-obj-f32", MLPClassifier(max_iter=5, random_state=0, dtype=np.float32).fit(
            X, labels.astype(object)), X, labels.astype(object)
        yield "clf-int-es", MLPClassifier(max_iter=20, early_stopping=True, random_state=0,
                                          solver="sgd", n_iter_no_change=np.inf).fit(X, y + 5), X, y + 5
        yield "reg-multi", MLPRegressor(max_iter=5, random_state=0, activation="logistic",
                                        alpha=0.5).fit(X, X[:, :2]), X, X[:, :2]
        yield "reg-f32-val", MLPRegressor(max_iter=5, random_state=np.random.default_rng(0)).fit(
            X.astype(np.float32), X[:, 0], X_val=X[:9], y_val=X[:9, 0]), X, X[:, 0]


@pytest.fixture(scope="module")
def estimators():
    return list(_estimators())


def test_estimator_round_trip_is_bitwise_and_resumes_exactly(tmp_path, estimators):
    from sklearn.base import is_classifier
    for name, est, X, y in estimators:
        path = tmp_path / f"{name}.fmlp"
        save(est, path)
        back = load(path)
        assert type(back) is type(est), name
        out = est.predict_proba(X) if is_classifier(est) else est.predict(X)
        out2 = back.predict_proba(X) if is_classifier(back) else back.predict(X)
        assert out.dtype == out2.dtype and out.tobytes() == out2.tobytes(), name
        np.testing.assert_array_equal(est.predict(X), back.predict(X))
        for attr in ("n_iter_", "t_", "loss_curve_", "best_loss_", "validation_scores_",
                     "validation_loss_curve_", "best_validation_score_", "n_features_in_",
                     "n_outputs_"):
            assert getattr(back, attr) == getattr(est, attr), (name, attr)
        if is_classifier(est):
            assert back.classes_.dtype == est.classes_.dtype
            np.testing.assert_array_equal(back.classes_, est.classes_)
        params = est.get_params()
        if not isinstance(params["random_state"], (int, type(None))):
            params["random_state"] = None  # a Generator is not stored
        assert back.get_params() == params, name
        # the optimizer state and the shuffling stream came along: training continues exactly
        kw = {"classes": None} if is_classifier(est) else {}
        if not est.early_stopping:
            est.partial_fit(X, y, **kw)
            back.partial_fit(X, y, **kw)
            for a, b in zip(est.coefs_, back.coefs_):
                np.testing.assert_array_equal(a, b)


def test_unfitted_estimator_is_not_saved(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.exceptions import NotFittedError

    from fastmlp.estimator import MLPClassifier
    with pytest.raises(NotFittedError):
        save(MLPClassifier(), tmp_path / "x")


# ----------------------------------------------------------------------------- damaged files
# Each test runs on a file of the current format (2, safetensors) and on a version 1 file
# (a ZIP archive) written by fastmlp 0.1 (tests/data/io_v1).

@pytest.fixture(params=[2, 1], ids=["v2", "v1"])
def saved(tmp_path, request):
    """(path, network it holds, its optimizer's step count)."""
    path = tmp_path / "model.fmlp"
    if request.param == 1:
        path.write_bytes(V1_NETWORK.read_bytes())
        net, opt = load(V1_NETWORK, with_optimizer=True)   # tests/test_io_compat.py checks it
        return path, net, opt.iter
    net, opt = _trained(fastmlp.MultiLayerNet(4, [3], 2, seed=0, dtype=np.float32))
    save(net, path, optimizer=opt)
    return path, net, opt.iter


def _rewrite(path, header=None, arrays=None, drop=()):
    """The file at ``path`` with the header replaced and arrays replaced/added/dropped."""
    rewrite(path, path, None if header is None else (lambda h: (h.clear(), h.update(header))),
            arrays, drop)


def _header(path):
    return read(path)[0]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.fmlp")


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04garbage",
                                     b"\x93NUMPY" + b"\x00" * 100], ids=["empty", "text", "pk", "npy"])
def test_not_a_model_file(tmp_path, content):
    path = tmp_path / "x.fmlp"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        load(path)


def test_zip_of_something_else(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="not a fastmlp model file"):
        load(path)


def test_safetensors_of_something_else(tmp_path):
    """Plain safetensors weights (no fastmlp header): refused, pointing at the torch import."""
    from safetensors.numpy import save_file
    path = tmp_path / "w.safetensors"
    save_file({"0.weight": np.ones((2, 3), np.float32)}, str(path))
    with pytest.raises(ValueError, match="not a fastmlp model file.*from_torch_state_dict"):
        load(path)


def test_truncated_anywhere(saved):
    path, _, _ = saved
    data = path.read_bytes()
    for cut in sorted(set(range(0, len(data), max(1, len(data) // 97))) | {len(data) - 1}):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            load(path)


def test_every_flipped_byte_is_caught_or_harmless(saved):
    """Flip each byte of the file in turn: load raises ValueError (checksums, header
    checks), or — for bytes the reader never trusts, such as ZIP timestamps or JSON
    whitespace — gives the same model. Every byte of the header (v2) or of the first
    member's header and the central directory (v1), ~400 spread over the rest."""
    path, net, _ = saved
    data = path.read_bytes()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expected = net.predict(x).tobytes()
    if data[:2] == b"PK":
        header = set(range(64)) | set(range(data.find(b"PK\x01\x02"), len(data)))
    else:
        header = set(range(8 + int.from_bytes(data[:8], "little")))
    positions = sorted(header | set(range(0, len(data), max(1, len(data) // 400))))
    harmless = 0
    for i in positions:
        damaged = bytearray(data)
        damaged[i] ^= 0x5A
        path.write_bytes(bytes(damaged))
        try:
            back = load(path)
        except ValueError:
            continue
        assert back.predict(x).tobytes() == expected, f"byte {i} changed the model silently"
        harmless += 1
    assert harmless < len(positions) // 2  # metadata only: most flips are caught


def test_altered_array_fails_checksum(saved):
    """An array changed while the container stays valid (v1: ZIP CRC recomputed)."""
    path, _, _ = saved
    arr = read(path)[1]["network/W1"].copy()
    arr[0, 0] += 1
    _rewrite(path, arrays={"network/W1": arr})
    with pytest.raises(ValueError, match="SHA-256"):
        load(path)


def test_header_shape_disagreeing_with_array(saved):
    path, _, _ = saved
    header = _header(path)
    header["arrays"]["network/b1"]["shape"] = [4]
    _rewrite(path, header=header)
    with pytest.raises(ValueError, match="network/b1"):
        load(path)


@pytest.mark.parametrize("change, match", [
    ({"format_version": FORMAT_VERSION + 1}, f"version {FORMAT_VERSION + 1}.*upgrade"),
    ({"format_version": "1"}, "format_version"),
    ({"format": "keras"}, "not a fastmlp model file"),
    ({"kind": "toaster"}, "kind"),
])
def test_wrong_version_or_format(saved, change, match):
    path, _, _ = saved
    header = _header(path)
    header.update(change)
    _rewrite(path, header=header)
    with pytest.raises(ValueError, match=match):
        load(path)


def test_container_and_version_must_agree(saved):
    """A ZIP holds version 1 and a safetensors file version 2; anything else is altered."""
    path, _, _ = saved
    header = _header(path)
    v1 = header["format_version"] == 1
    header["format_version"] = 2 if v1 else 1
    _rewrite(path, header=header)
    with pytest.raises(ValueError, match="ZIP archive holds format version 1" if v1
                       else "safetensors file holds format version 2"):
        load(path)


@pytest.mark.parametrize("mutate", [
    lambda h: h["model"].update({"class": "os.system"}),
    lambda h: h["model"].update({"implementation": "pickle"}),
    lambda h: h["model"]["config"].update({"activation": "softplus"}),
    lambda h: h["model"]["config"].update({"dtype": "object"}),
    lambda h: h["model"].pop("config"),
    lambda h: h["optimizer"].update({"class": "builtins.eval"}),
], ids=["class", "implementation", "activation", "dtype", "no-config", "optimizer-class"])
def test_invalid_model_description(saved, mutate):
    path, _, _ = saved
    header = _header(path)
    mutate(header)
    _rewrite(path, header=header)
    with pytest.raises(ValueError, match="invalid model description|unknown"):
        load(path)


def test_pickle_member_is_rejected(saved):
    path, _, _ = saved
    evil = pickle.dumps({"evil": True})
    if version_of(path) == 1:
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("model.pkl", evil)
        match = "unexpected members.*model.pkl"
    else:
        _rewrite(path, arrays={"model_pkl": np.frombuffer(evil, np.uint8)})
        match = "model_pkl.*not the array table"
    with pytest.raises(ValueError, match=match):
        load(path)


def test_object_array_is_rejected(saved):
    """An array table entry of object dtype (v1: an .npy member holding a pickled object
    array), declared honestly or disguised."""
    path, _, _ = saved
    header = _header(path)
    header["arrays"]["network/b1"]["dtype"] = "|O"
    evil = {"network/b1": np.array([{"evil": 1}], dtype=object)} if version_of(path) == 1 else {}
    _rewrite(path, header=header, arrays=evil)
    with pytest.raises(ValueError, match="not allowed"):
        load(path)
    header["arrays"]["network/b1"]["dtype"] = "<f4"
    header["arrays"]["network/b1"]["shape"] = [1]
    _rewrite(path, header=header)
    with pytest.raises(ValueError, match="network/b1"):
        load(path)


def test_load_never_unpickles(saved, monkeypatch):
    path, net, steps = saved

    def refuse(*args, **kwargs):
        raise AssertionError("pickle was called")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    back, opt = load(path, with_optimizer=True)
    np.testing.assert_array_equal(back.params["W1"], net.params["W1"])
    assert opt.iter == steps


def test_file_is_safetensors_with_checksums(tmp_path):
    """The documented format: any safetensors reader sees the arrays; the header is the one
    metadata entry, its SHA-256 over its canonical JSON, each array's over its bytes."""
    from safetensors import safe_open
    net, opt = _trained(fastmlp.MultiLayerNet(4, [3], 2, seed=0, dtype=np.float32))
    path = tmp_path / "model.safetensors"
    save(net, path, optimizer=opt)
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
        tensors = {n: f.get_tensor(n) for n in f.keys()}
    assert list(metadata) == ["fastmlp"]
    header = json.loads(metadata["fastmlp"])
    digest = header.pop("sha256")
    assert hashlib.sha256(canonical(header).encode()).hexdigest() == digest
    assert sorted(tensors) == sorted(header["arrays"])
    for name, spec in header["arrays"].items():
        arr = tensors[name]
        assert hashlib.sha256(arr.tobytes()).hexdigest() == spec["sha256"]
        assert arr.dtype.str == spec["dtype"] and list(arr.shape) == spec["shape"]
    for k, p in net.params.items():
        assert tensors[f"network/{k}"].tobytes() == p.tobytes()
    assert header["format"] == "fastmlp" and header["format_version"] == 2
    assert header["kind"] == "network" and header["model"]["implementation"] == "compiled"
