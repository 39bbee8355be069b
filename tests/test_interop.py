"""fastmlp.export_onnx against onnxruntime, and fastmlp.from_torch_state_dict against numpy
(and PyTorch itself where it is installed).

Tolerance (TESTING.md's fallback for two implementations whose reductions run in
different orders, onnxruntime's MLAS or numpy's BLAS against fastmlp's): float64
``rtol 1e-9, atol 1e-12 * scale``, float32 ``rtol 1e-4, atol 1e-5 * scale``, ``scale`` the
largest magnitude of the expected output.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmlp
from fastmlp import reference

DTYPES = [np.float32, np.float64]
TOL = {np.float32: (1e-4, 1e-5), np.float64: (1e-9, 1e-12)}
STANDARD_OPS = {"Gemm", "Relu", "Sigmoid", "Tanh", "Softmax", "Identity"}
ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity"]


def assert_close(got, want, dtype, what):
    rtol, atol = TOL[dtype]
    scale = float(np.max(np.abs(want))) if np.size(want) else 1.0
    assert got.dtype == want.dtype == dtype, (what, got.dtype, want.dtype)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=what)


def run_onnx(model, path, x):
    """{output name: array} of onnxruntime on ``model`` exported to ``path``; the graph's ops.
    (onnx and onnxruntime are in the test extra: CI runs these.)"""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    fastmlp.export_onnx(model, path)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert ops <= STANDARD_OPS, ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"x": x}))), ops


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


sizes = st.fixed_dictionaries({
    "n_in": st.integers(1, 13), "hidden": st.lists(st.integers(1, 17), max_size=3),
    "n_out": st.integers(1, 7), "batch": st.integers(1, 9), "seed": st.integers(0, 2**31),
    "activation": st.sampled_from(ACTIVATIONS), "dtype": st.sampled_from(DTYPES)})


# ----------------------------------------------------------------------------- ONNX: networks

@settings(max_examples=25, deadline=None)
@given(s=sizes, impl=st.sampled_from(["compiled", "reference"]),
       loss=st.sampled_from(["cross_entropy", "mse"]))
def test_onnx_multilayernet_matches_predict(tmp_path_factory, s, impl, loss):
    cls = fastmlp.MultiLayerNet if impl == "compiled" else reference.MultiLayerNet
    net = cls(s["n_in"], s["hidden"], s["n_out"], activation=s["activation"],
              weight_init_std=0.5, dtype=s["dtype"], seed=s["seed"], loss=loss)
    rng = np.random.default_rng(s["seed"])
    for p in net.params.values():          # non-zero biases
        p += rng.normal(scale=0.3, size=p.shape).astype(p.dtype)
    x = rng.normal(size=(s["batch"], s["n_in"])).astype(s["dtype"])
    out, _ = run_onnx(net, tmp_path_factory.mktemp("onnx") / "net.onnx", x)
    want = net.predict(x)
    assert_close(out["scores"], want, s["dtype"], "scores")
    if loss == "cross_entropy":
        assert_close(out["probabilities"], softmax(want), s["dtype"], "probabilities")
    else:
        assert "probabilities" not in out


@pytest.mark.parametrize("dtype", DTYPES)
def test_onnx_twolayernet(tmp_path, dtype):
    net = fastmlp.TwoLayerNet(9, 11, 5, weight_init_std=0.3, dtype=dtype, seed=3)
    x = np.random.default_rng(0).normal(size=(7, 9)).astype(dtype)
    out, ops = run_onnx(net, tmp_path / "two.onnx", x)
    assert_close(out["scores"], net.predict(x), dtype, "scores")
    assert ops == {"Gemm", "Relu", "Softmax", "Identity"}


@settings(max_examples=20, deadline=None)
@given(s=sizes, batchnorm=st.booleans(), dropout=st.sampled_from([None, 0.0, 0.3, 0.5]),
       trained=st.booleans())
def test_onnx_multilayernet_extend_in_inference_mode(tmp_path_factory, s, batchnorm, dropout,
                                                     trained):
    """Batch norm folded with its running statistics (zeros before any training pass, as
    the book starts them), dropout's inference scale folded: the graph is plain Gemms."""
    net = fastmlp.MultiLayerNetExtend(
        s["n_in"], s["hidden"], s["n_out"], activation=s["activation"], weight_init_std=0.5,
        use_dropout=dropout is not None, dropout_ration=dropout or 0.5, use_batchnorm=batchnorm,
        dtype=s["dtype"], seed=s["seed"])
    rng = np.random.default_rng(s["seed"])
    if trained:
        for _ in range(3):                 # running statistics move, gamma/beta too
            xt = rng.normal(loc=1.0, size=(8, s["n_in"])).astype(s["dtype"])
            grads = net.gradient(xt, rng.integers(0, s["n_out"], 8))
            for k in net.params:
                net.params[k] -= (0.1 * grads[k]).astype(net.params[k].dtype)
    x = rng.normal(size=(s["batch"], s["n_in"])).astype(s["dtype"])
    out, ops = run_onnx(net, tmp_path_factory.mktemp("onnx") / "ext.onnx", x)
    assert "BatchNormalization" not in ops and "Dropout" not in ops
    assert_close(out["scores"], net.predict(x, train_flg=False), s["dtype"], "scores")


# ----------------------------------------------------------------------------- ONNX: estimators

def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("extra", [{}, {"batch_norm": True}, {"dropout": 0.25}],
                         ids=["plain", "batch_norm", "dropout"])
def test_onnx_estimators(tmp_path, dtype, extra):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(53, 7))
    clf = _fit(fastmlp.MLPClassifier(hidden_layer_sizes=(9, 5), max_iter=5, random_state=0,
                                     activation="tanh", dtype=dtype, **extra),
               X, np.array(["a", "b", "c"])[np.arange(53) % 3])
    reg = _fit(fastmlp.MLPRegressor(hidden_layer_sizes=(6,), max_iter=5, random_state=0,
                                    activation="logistic", dtype=dtype, **extra), X, X[:, 0])
    reg2 = _fit(fastmlp.MLPRegressor(hidden_layer_sizes=(), max_iter=5, random_state=0,
                                     dtype=dtype, **extra), X, X[:, :3])
    x = rng.normal(size=(11, 7)).astype(dtype)
    out, _ = run_onnx(clf, tmp_path / "clf.onnx", x)
    assert list(out) == ["probabilities"]
    assert_close(out["probabilities"], clf.predict_proba(x), dtype, "predict_proba")
    out, _ = run_onnx(reg, tmp_path / "reg.onnx", x)
    assert_close(out["predictions"].ravel(), reg.predict(x), dtype, "predict")
    out, _ = run_onnx(reg2, tmp_path / "reg2.onnx", x)
    assert_close(out["predictions"], reg2.predict(x), dtype, "predict (2 outputs)")


def test_onnx_refuses_what_it_cannot_export(tmp_path):
    pytest.importorskip("onnx")
    with pytest.raises(TypeError, match="MultiLayerNet"):
        fastmlp.export_onnx({"W1": np.zeros((2, 2))}, tmp_path / "x.onnx")
    pytest.importorskip("sklearn")
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        fastmlp.export_onnx(fastmlp.MLPClassifier(), tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- torch import

def _torch_like(sizes, dtype, rng, bias=True):
    """A Sequential(Linear, act, Linear, ...)'s state_dict: weights (out, in) at even indices."""
    sd = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        sd[f"{2 * i}.weight"] = rng.normal(scale=0.5, size=(n_out, n_in)).astype(dtype)
        if bias:
            sd[f"{2 * i}.bias"] = rng.normal(scale=0.5, size=n_out).astype(dtype)
    return sd


NUMPY_ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
                     "tanh": np.tanh, "identity": lambda z: z}


def _numpy_forward(sd, x, activation):
    n = len([k for k in sd if k.endswith("weight")])
    h = x
    for i in range(n):
        h = h @ sd[f"{2 * i}.weight"].T + sd.get(f"{2 * i}.bias", 0)
        if i < n - 1:
            h = NUMPY_ACTIVATIONS[activation](h)
    return h


@settings(max_examples=25, deadline=None)
@given(s=sizes, bias=st.booleans())
def test_from_torch_state_dict_matches_numpy(s, bias):
    rng = np.random.default_rng(s["seed"])
    sd = _torch_like([s["n_in"], *s["hidden"], s["n_out"]], s["dtype"], rng, bias)
    net = fastmlp.from_torch_state_dict(sd, activation=s["activation"])
    assert isinstance(net, fastmlp.MultiLayerNet) and net.dtype == s["dtype"]
    assert net.hidden_size_list == s["hidden"]
    x = rng.normal(size=(s["batch"], s["n_in"])).astype(s["dtype"])
    assert_close(net.predict(x), _numpy_forward(sd, x, s["activation"]).astype(s["dtype"]),
                 s["dtype"], "predict")


def test_from_torch_state_dict_prefix_dtype_and_safetensors_file(tmp_path):
    from safetensors.numpy import save_file
    rng = np.random.default_rng(1)
    sd = _torch_like([6, 5, 3], np.float32, rng)
    x = rng.normal(size=(4, 6))
    want = _numpy_forward(sd, x.astype(np.float32), "tanh")
    prefixed = {f"model.{k}": v for k, v in sd.items()}
    net = fastmlp.from_torch_state_dict(prefixed, "tanh", dtype=np.float64)
    assert net.dtype == np.float64
    assert_close(net.predict(x), _numpy_forward(sd, x, "tanh"), np.float64, "f64 from f32")
    save_file(sd, str(tmp_path / "w.safetensors"))
    net = fastmlp.from_torch_state_dict(tmp_path / "w.safetensors", activation="tanh")
    assert_close(net.predict(x.astype(np.float32)), want, np.float32, "from a file")
    assert net.loss_name == "cross_entropy"
    assert fastmlp.from_torch_state_dict(sd, "relu", loss="mse").loss_name == "mse"


BAD_STATE_DICTS = {
    "empty": ({}, ValueError, "no Linear"),
    "conv_key": ({"0.weight": np.ones((2, 3)), "conv.kernel": np.ones(3)}, ValueError,
                 "conv.kernel"),
    "1d_weight": ({"0.weight": np.ones(3)}, ValueError, "2-D"),
    "chain": ({"0.weight": np.ones((4, 3)), "2.weight": np.ones((2, 5))}, ValueError,
              "2.weight.*5 inputs.*gives 4"),
    "bias_shape": ({"0.weight": np.ones((4, 3)), "0.bias": np.ones(3)}, ValueError, "0.bias"),
    "bias_only": ({"0.weight": np.ones((4, 3)), "2.bias": np.ones(3)}, ValueError, "layer 2"),
    "mixed": ({"0.weight": np.ones((4, 3), np.float32), "0.bias": np.ones(4)}, ValueError,
              "float32 or all float64"),
    "float16": ({"0.weight": np.ones((4, 3), np.float16)}, ValueError, "dtype="),
    "nan": ({"0.weight": np.full((4, 3), np.nan)}, ValueError, "NaN"),
    "prefixes": ({"a.0.weight": np.ones((4, 3)), "b.1.weight": np.ones((2, 4))}, ValueError,
                 "prefixes"),
    "not_mapping": ([("0.weight", np.ones((2, 2)))], TypeError, "mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_STATE_DICTS))
def test_from_torch_state_dict_bad_input(case):
    sd, error, match = BAD_STATE_DICTS[case]
    with pytest.raises(error, match=match):
        fastmlp.from_torch_state_dict(sd)


def test_from_torch_state_dict_bad_activation_and_file(tmp_path):
    with pytest.raises(ValueError, match="activation"):
        fastmlp.from_torch_state_dict({"0.weight": np.ones((2, 2))}, activation="gelu")
    with pytest.raises(FileNotFoundError):
        fastmlp.from_torch_state_dict(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match="bad.safetensors.*header claims"):
        fastmlp.from_torch_state_dict(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
def test_from_torch_matches_torch(tmp_path, dtype, activation):
    torch = pytest.importorskip("torch")   # not in the test extra: runs where torch is installed
    from safetensors.torch import save_file
    act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh,
           "identity": torch.nn.Identity}[activation]
    torch.manual_seed(0)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    model = torch.nn.Sequential(torch.nn.Linear(13, 9), act(), torch.nn.Linear(9, 7, bias=False),
                                act(), torch.nn.Linear(7, 3)).to(tdtype)
    x = np.random.default_rng(2).normal(size=(17, 13)).astype(dtype)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    net = fastmlp.from_torch_state_dict(sd, activation=activation)
    assert_close(net.predict(x), want, dtype, "from state_dict arrays")
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    net = fastmlp.from_torch_state_dict(tmp_path / "m.safetensors", activation=activation)
    assert_close(net.predict(x), want, dtype, "from a safetensors file")


def test_onnx_missing_names_the_extra(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'fastmlp\[onnx\]'):
        fastmlp.export_onnx(fastmlp.MultiLayerNet(2, [2], 2), tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())
