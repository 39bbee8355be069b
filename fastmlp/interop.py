"""Models in and out of other frameworks: ONNX export, and PyTorch weights imported.

``export_onnx(model, path)`` writes a standard ONNX graph (opset 17: ``Gemm``, then
``Relu``/``Sigmoid``/``Tanh`` between layers, ``Softmax`` for probabilities) that any ONNX
runtime runs; it needs the ``onnx`` package (``pip install "fastmlp[onnx]"``).
``from_torch_state_dict(state_dict, activation)`` builds a ``MultiLayerNet`` from the
``state_dict`` of a PyTorch ``nn.Sequential`` of ``Linear`` layers and activations (as numpy
arrays, or a ``.safetensors`` file of them); it needs neither torch nor onnx.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

from ._files import open_regular, replace_atomically
from ._format_v2 import read_tensors
from ._model_file import is_estimator
from ._records import network_classes
from ._regularization import BN_EPS
from ._typing import FloatArray, PathLike
from ._validation import check_dtype
from ._version import __version__

if TYPE_CHECKING:   # for the annotations only
    from .networks import MultiLayerNet

__all__ = ["export_onnx", "from_torch_state_dict"]

ONNX_OPSET = 17
_ONNX_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": None}


# ----------------------------------------------------------------------------- export

def inference_layers(model: Any) -> tuple[list[tuple[FloatArray, FloatArray]], str,
                                            dict[str, str]]:
    """What ``model`` computes at inference, as plain affine layers.

    Returns ``(layers, activation, outputs)``: ``layers`` the ``(W, b)`` of each affine
    layer in the model's dtype, batch normalisation (running statistics) and dropout's
    inference scale folded in; ``activation`` the hidden layers' ('relu', 'sigmoid',
    'tanh' or 'identity'); ``outputs`` the graph's outputs, ``{name: "logits" |
    "softmax"}``: a network's ``scores`` (what ``predict`` returns) and, for a
    cross-entropy network, ``probabilities``; a classifier's ``probabilities``
    (``predict_proba``); a regressor's ``predictions`` (``predict``, before its ravel).
    """
    if is_estimator(model):
        model._check_fitted()
        net = model._net
        outputs = ({"probabilities": "softmax"} if model.out_activation_ == "softmax"
                   else {"predictions": "logits"})
    elif type(net := model) in network_classes(extended=True).values():
        outputs = {"scores": "logits"}
        if net.loss_name == "cross_entropy":
            outputs["probabilities"] = "softmax"
    else:
        raise TypeError(f"export_onnx supports fastmlp's MultiLayerNet, MultiLayerNetExtend and "
                        f"TwoLayerNet (compiled or fastmlp.reference) and fitted MLPClassifier/"
                        f"MLPRegressor, got {type(model).__module__}.{type(model).__name__}")
    dtype = np.dtype(check_dtype(net.dtype))
    n_affine = net.hidden_layer_num + 1
    stats = net.running_statistics() if getattr(net, "use_batchnorm", False) else None
    layers, scale_in = [], None
    for i in range(1, n_affine + 1):
        W = np.asarray(net.params[f"W{i}"], dtype=np.float64)
        b = np.asarray(net.params[f"b{i}"], dtype=np.float64)
        if scale_in is not None:                 # the previous layer's dropout, at inference
            W = W * scale_in
        scale_in = None
        if i < n_affine and stats is not None:   # y = (z - mean) / sqrt(var + eps) * gamma + beta
            mean, var = (np.zeros(b.shape) if s is None else np.asarray(s, np.float64)
                         for s in stats[i - 1])
            s = np.asarray(net.params[f"gamma{i}"], np.float64) / np.sqrt(var + BN_EPS)
            W, b = W * s, (b - mean) * s + np.asarray(net.params[f"beta{i}"], np.float64)
        if i < n_affine and getattr(net, "use_dropout", False):
            scale_in = 1.0 - net.layers[f"Dropout{i}"].dropout_ratio
        layers.append((W.astype(dtype), b.astype(dtype)))
    return layers, net.activation, outputs


def _onnx_model(model):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    layers, activation, outputs = inference_layers(model)
    dtype = layers[0][0].dtype
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits, h = [], [], "x"
    for i, (W, b) in enumerate(layers, start=1):
        inits += [numpy_helper.from_array(W, f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        out = "logits" if i == len(layers) else f"z{i}"
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"b{i}"], [out], name=f"Gemm{i}"))
        h = out
        op = _ONNX_ACTIVATIONS[activation]
        if i < len(layers) and op is not None:
            nodes.append(helper.make_node(op, [h], [f"a{i}"], name=f"{op}{i}"))
            h = f"a{i}"
    n_out = layers[-1][0].shape[1]
    outs = []
    for name, kind in outputs.items():
        op = "Softmax" if kind == "softmax" else "Identity"
        attrs = {"axis": -1} if op == "Softmax" else {}
        nodes.append(helper.make_node(op, ["logits"], [name], name=name, **attrs))
        outs.append(helper.make_tensor_value_info(name, elem, ["N", n_out]))
    graph = helper.make_graph(
        nodes, f"fastmlp_{type(model).__name__}",
        [helper.make_tensor_value_info("x", elem, ["N", layers[0][0].shape[0]])], outs, inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
                                   producer_name="fastmlp", producer_version=__version__)
    onnx_model.ir_version = 8                    # the oldest IR of opset 17: older runtimes read it
    onnx.checker.check_model(onnx_model)
    return onnx_model


def export_onnx(model: Any, path: PathLike) -> None:
    """Write ``model``'s inference graph to ``path`` as ONNX (needs the ``onnx`` package).

    Parameters
    ----------
    model : MultiLayerNet, MultiLayerNetExtend, TwoLayerNet (compiled or reference), or a fitted
        MLPClassifier / MLPRegressor
        float32 or float64: the graph computes in the model's dtype.
    path : str or os.PathLike
        Replaced atomically. One input ``x`` of shape ``(N, input_size)``; outputs, each
        ``(N, output_size)``: a network's ``scores`` (``predict``), plus ``probabilities``
        (softmax) when its loss is cross-entropy; a classifier's ``probabilities``
        (``predict_proba``); a regressor's ``predictions`` (``predict``, 2-D).
        ``MultiLayerNetExtend`` is exported in inference mode: batch normalisation with
        its running statistics and dropout's ``1 - ratio`` scale folded into the ``Gemm``
        weights, so the graph holds no BatchNormalization or Dropout node.

    Raises
    ------
    TypeError
        For a model this export does not hold.
    ImportError
        Without the ``onnx`` package.
    """
    path = os.fspath(path)
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError('export_onnx needs the onnx package: pip install "fastmlp[onnx]"') \
            from None
    data = _onnx_model(model).SerializeToString()
    replace_atomically(path, lambda fh: fh.write(data))


# ----------------------------------------------------------------------------- torch import

_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)(?P<index>[0-9]+)\.(?P<kind>weight|bias)$")


def _torch_arrays(state_dict):
    """{name: ndarray} of a mapping, or of the safetensors file a path names."""
    if isinstance(state_dict, (str, os.PathLike)):
        path = os.fspath(state_dict)
        try:
            with open_regular(path) as f:
                return read_tensors(f, path, os.fstat(f.fileno()).st_size)
        except (FileNotFoundError, PermissionError):
            raise
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to arrays or a path to a "
                        f".safetensors file, got {type(state_dict).__name__}")
    out = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"state_dict keys must be strings, got {key!r:.60}")
        try:
            out[key] = np.asarray(value)
        except Exception as exc:   # a tensor needing .detach()/.cpu(), say
            raise TypeError(f"state_dict[{key!r}] is not convertible to a numpy array "
                            f"({type(exc).__name__}: {exc}); pass tensor.detach().cpu().numpy()"
                            ) from None
    return out


def _linear_layers(arrays):
    """[(weight (out, in), bias (out,) or None)] in index order, shapes chained."""
    if not arrays:
        raise ValueError("state_dict holds no Linear layer")
    groups, prefixes = {}, set()
    for key, a in arrays.items():
        m = _KEY.match(key)
        if m is None:
            hint = " (a fastmlp model file loads with fastmlp.load)" if key.startswith(
                "network/") else ""
            raise ValueError(f"state_dict key {key!r:.80} is not '<index>.weight' or "
                             f"'<index>.bias' of an nn.Sequential of Linear layers{hint}")
        prefixes.add(m["prefix"])
        groups.setdefault(int(m["index"]), {})[m["kind"]] = (key, a)
    if len(prefixes) > 1:
        raise ValueError(f"state_dict keys have different prefixes {sorted(prefixes)[:5]}")
    layers = []
    for index in sorted(groups):
        group = groups[index]
        if "weight" not in group:
            raise ValueError(f"state_dict has a bias but no weight for layer {index}")
        key, W = group["weight"]
        if W.ndim != 2 or 0 in W.shape:
            raise ValueError(f"state_dict[{key!r}] must be a 2-D (out_features, in_features) "
                             f"Linear weight, got shape {W.shape}")
        if layers and W.shape[1] != layers[-1][0].shape[0]:
            raise ValueError(f"state_dict[{key!r}] takes {W.shape[1]} inputs, but the layer "
                             f"before gives {layers[-1][0].shape[0]}")
        b = None
        if "bias" in group:
            bkey, b = group["bias"]
            if b.shape != (W.shape[0],):
                raise ValueError(f"state_dict[{bkey!r}] must have shape ({W.shape[0]},), "
                                 f"got {b.shape}")
        layers.append((W, b))
    return layers


def from_torch_state_dict(state_dict: Mapping[str, Any] | PathLike, activation: str = "relu", *,
                          loss: str = "cross_entropy",
                          dtype: DTypeLike | None = None) -> MultiLayerNet:
    """A ``MultiLayerNet`` with the weights of a PyTorch ``nn.Sequential`` of ``Linear`` layers.

    Parameters
    ----------
    state_dict : mapping or str or os.PathLike
        ``{"0.weight": (out, in), "0.bias": (out,), "2.weight": ...}`` as numpy arrays (or
        anything ``np.asarray`` takes), in index order, one common prefix allowed
        (``"net.0.weight"``); a Linear without bias gets zeros. Or the path of a
        ``.safetensors`` file of them (``safetensors.torch.save_file(model.state_dict(),
        path)``). PyTorch's ``(out, in)`` weights are transposed into fastmlp's ``(in, out)``.
    activation : {'relu', 'sigmoid', 'tanh', 'identity'}
        The activation between the Linear layers (a state_dict does not record it).
    loss : {'cross_entropy', 'mse'}
        The network's loss, for training it further.
    dtype : float32 or float64, optional
        Default: the weights' own (they must all be float32 or all float64).

    Returns
    -------
    MultiLayerNet
        ``predict(x)`` computes ``model(x)``: the last Linear's output, with no softmax.
    """
    layers = _linear_layers(_torch_arrays(state_dict))
    if dtype is None:
        kinds = {a.dtype for W, b in layers for a in (W, b) if a is not None}
        if len(kinds) != 1 or next(iter(kinds)) not in (np.float32, np.float64):
            raise ValueError(f"state_dict arrays must all be float32 or all float64 (got "
                             f"{sorted(map(str, kinds))}); pass dtype= to convert them")
        dtype = next(iter(kinds))
    dtype = np.dtype(check_dtype(dtype))
    params = {}
    for i, (W, b) in enumerate(layers, start=1):
        if W.dtype.kind not in "fiu" or (b is not None and b.dtype.kind not in "fiu"):
            raise TypeError(f"layer {i} of state_dict holds {W.dtype} values, not numbers")
        params[f"W{i}"] = np.ascontiguousarray(W.T, dtype=dtype)
        params[f"b{i}"] = (np.zeros(W.shape[0], dtype) if b is None
                           else np.array(b, dtype=dtype, order="C"))
        for name in (f"W{i}", f"b{i}"):
            if not np.all(np.isfinite(params[name])):
                raise ValueError(f"layer {i} of state_dict holds NaN or infinite values")
    sizes = [layers[0][0].shape[1]] + [W.shape[0] for W, _ in layers]
    config = {"input_size": sizes[0], "hidden_size_list": sizes[1:-1],
              "output_size": sizes[-1], "activation": activation, "weight_decay_lambda": 0.0,
              "dtype": dtype.name, "loss": loss}
    net_class = network_classes()[("MultiLayerNet", "compiled")]
    return net_class.from_config(config, params)
