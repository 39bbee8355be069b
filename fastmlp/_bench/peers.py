"""The peers ``fastmlp bench`` compares: one training step and one predict of each.

A step maker ``maker(sizes, batch, dtype, X, T, activation="relu")`` returns
``(step, per_call)``: ``step(i)`` trains on batch number ``i`` (cycling through
``X``, ``T``) and does ``per_call`` SGD steps (lr ``LR``) of the network with that
hidden activation (``relu``, ``sigmoid``, ``tanh`` or ``identity``, optionally followed by
batch norm and dropout: ``relu+bn+dropout``). The peers themselves (the compiled
and reference networks, PyTorch, scikit-learn) are imported inside the makers,
so a missing one is reported for its column only.
"""
import numpy as np

from .configs import LR, ONNX_THREADS, SKLEARN_BATCHES, batch_start, split_variant


def _textbook_step(network_classes, sgd_class, sizes, batch, dtype, X, T, activation):
    """``opt.update(net.params, net.gradient(x, t))``: the textbook step peers.py times, on the
    first of ``network_classes`` (MultiLayerNet, MultiLayerNetExtend) or, for a variant with
    batch norm or dropout (``relu+bn+dropout``), the second."""
    act, batchnorm, dropout = split_variant(activation)
    if batchnorm or dropout:
        net = network_classes[1](sizes[0], sizes[1:-1], sizes[-1], activation=act,
                                 use_batchnorm=batchnorm, use_dropout=dropout, dtype=dtype, seed=0)
    else:
        net = network_classes[0](sizes[0], sizes[1:-1], sizes[-1], activation=act, dtype=dtype,
                                 seed=0)
    opt = sgd_class(lr=LR)

    def step(i):
        j = batch_start(i, batch)
        opt.update(net.params, net.gradient(X[j:j + batch], T[j:j + batch]))
    return step, 1


def fastmlp_step(sizes, batch, dtype, X, T, activation="relu"):
    """The textbook step on the compiled ``fastmlp.MultiLayerNet`` and ``SGD``."""
    from ..networks import MultiLayerNet
    from ..networks_extend import MultiLayerNetExtend
    from ..optimizers import SGD
    return _textbook_step((MultiLayerNet, MultiLayerNetExtend), SGD, sizes, batch, dtype, X, T,
                          activation)


def numpy_step(sizes, batch, dtype, X, T, activation="relu"):
    """The textbook step on ``fastmlp.reference`` (plain numpy)."""
    from ..reference import MultiLayerNet, MultiLayerNetExtend
    from ..reference.optimizers import SGD
    return _textbook_step((MultiLayerNet, MultiLayerNetExtend), SGD, sizes, batch, dtype, X, T,
                          activation)


TORCH_ACTIVATIONS = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": "Identity"}


def torch_model(sizes, dtype, activation="relu"):
    """``nn.Sequential`` of ``Linear`` and the activation module with the layer ``sizes``
    (a variant's ``BatchNorm1d`` before it and ``Dropout(0.5)`` after, as the book's
    MultiLayerNetExtend: eps 1e-6, momentum 0.1 = the book's 0.9), seeded, in ``dtype``."""
    import torch
    torch.manual_seed(0)
    act, batchnorm, dropout = split_variant(activation)
    mods = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            if batchnorm:
                mods.append(torch.nn.BatchNorm1d(sizes[i + 1], eps=1e-6, momentum=0.1))
            mods.append(getattr(torch.nn, TORCH_ACTIVATIONS[act])())
            if dropout:
                mods.append(torch.nn.Dropout(0.5))
    return torch.nn.Sequential(*mods).to(torch.float32 if dtype == "float32" else torch.float64)


def torch_step(sizes, batch, dtype, X, T, activation="relu"):
    """``CrossEntropyLoss`` + ``optim.SGD`` on ``torch_model``, ``zero_grad(set_to_none=True)``."""
    import torch
    model = torch_model(sizes, dtype, activation)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    Xt, Tt = torch.from_numpy(X), torch.from_numpy(T)

    def step(i):
        j = batch_start(i, batch)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(Xt[j:j + batch]), Tt[j:j + batch]).backward()
        opt.step()
    return step, 1


def sklearn_step(sizes, batch, dtype, X, T, activation="relu"):
    """``MLPClassifier.partial_fit`` on SKLEARN_BATCHES batches per call (counted as that many
    steps: one call per batch would time sklearn's per-call validation)."""
    import warnings

    from sklearn.neural_network import MLPClassifier
    act, batchnorm, dropout = split_variant(activation)
    if batchnorm or dropout:
        raise ValueError("scikit-learn's MLPClassifier has no batch normalisation or dropout")
    clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), solver="sgd", learning_rate_init=LR,
                        activation="logistic" if act == "sigmoid" else act,
                        momentum=0.0, batch_size=batch, alpha=0.0, max_iter=1, shuffle=False,
                        random_state=0)
    rows = batch * SKLEARN_BATCHES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X[:batch], T[:batch], classes=np.arange(sizes[-1]))

    def step(i):
        j = batch_start(i, rows)
        clf.partial_fit(X[j:j + rows], T[j:j + rows])
    return step, SKLEARN_BATCHES


STEP_MAKERS = {"fastmlp": fastmlp_step, "numpy": numpy_step, "torch": torch_step,
               "sklearn": sklearn_step}


def predictors(sizes, dtype, names):
    """({peer: predict(x)}, {peer: {"unavailable": why}}) for the inference test.

    fastmlp and numpy call ``net.predict``; torch calls ``model(x)`` under
    ``no_grad``; with fastmlp, ``onnxruntime`` runs the same network exported by
    ``fastmlp.export_onnx``; scikit-learn is not timed at inference.
    """
    preds, missing = {}, {}
    if "fastmlp" in names:
        from ..networks import MultiLayerNet
        net = MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], dtype=dtype, seed=0)
        preds["fastmlp"] = net.predict
        try:
            preds["onnxruntime"] = onnx_predictor(sizes, dtype, net.predict)
        except Exception as exc:  # noqa: BLE001 - onnx or onnxruntime missing, say
            missing["onnxruntime"] = {"unavailable": f"{type(exc).__name__}: {exc}"[:200]}
    if "numpy" in names:
        from ..reference import MultiLayerNet as RefNet
        preds["numpy"] = RefNet(sizes[0], sizes[1:-1], sizes[-1], dtype=dtype, seed=0).predict
    if "torch" in names:
        try:
            import torch
            model = torch_model(sizes, dtype)
            model.eval()

            def torch_predict(x, model=model, torch=torch):
                with torch.no_grad():
                    return model(torch.from_numpy(x))
            preds["torch"] = torch_predict
        except Exception as exc:  # noqa: BLE001
            missing["torch"] = {"unavailable": f"{type(exc).__name__}: {exc}"[:200]}
    return preds, missing


def onnx_predictor(sizes, dtype, predict):
    """``predict(x)`` of onnxruntime on fastmlp's network (seed 0) exported by ``export_onnx``:
    ONNX_THREADS intra-op threads, one inter-op, sequential execution, all graph
    optimizations. The network is exported with loss 'mse' (same weights), so the graph's
    one output is ``scores``, the work of fastmlp's ``predict``; checked against ``predict``."""
    import os
    import tempfile

    import onnxruntime as ort

    from ..interop import export_onnx
    from ..networks import MultiLayerNet
    net = MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], dtype=dtype, seed=0, loss="mse")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "net.onnx")
        export_onnx(net, path)
        with open(path, "rb") as f:
            graph = f.read()
    options = ort.SessionOptions()
    options.intra_op_num_threads = ONNX_THREADS
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, sizes[0])).astype(dtype)
    tol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-9
    if not np.allclose(session.run(["scores"], {"x": x})[0], predict(x), rtol=tol, atol=tol):
        raise RuntimeError("the exported graph does not compute fastmlp's predict")

    def run(x, session=session):
        return session.run(["scores"], {"x": x})[0]
    return run
