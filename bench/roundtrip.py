"""Round trips out of fastmlp and back: max |difference| of predictions (issue #15).

A measurement script, not a test (the tests that bound these are in tests/).
For float32 and float64, it trains a few models briefly on the embedded digits —
``MultiLayerNet`` with relu, sigmoid and tanh, ``MultiLayerNetExtend`` with batch
normalisation, and an ``MLPClassifier`` — and prints, per model, the largest absolute
difference on the digits' test set between the model's own output (``max |output|``: its
largest magnitude, for scale) and:

- ``save/load``: ``fastmlp.save`` to a ``.safetensors`` file (format 2), ``fastmlp.load``
  back, ``predict`` (``predict_proba`` for the classifier); expected exactly 0;
- ``onnx``: ``fastmlp.export_onnx``, then onnxruntime's first graph output (a network's
  ``scores``, compared with ``predict``; a classifier's ``probabilities``, compared with
  ``predict_proba``);
- ``torch sd``: the model's inference layers (``fastmlp.interop.inference_layers``: batch
  normalisation folded in) written as a PyTorch ``nn.Sequential`` state_dict in a
  ``.safetensors`` file, read back with ``fastmlp.from_torch_state_dict``, ``predict``
  (networks only: the import returns logits, the classifier's output is probabilities);
- ``torch``: the same state_dict loaded into ``torch.nn.Sequential`` and run (if torch is
  installed), compared with ``predict``.

Needs onnx, onnxruntime and safetensors (torch optional). Takes a few seconds:

    python bench/roundtrip.py
"""
import os
import tempfile
import warnings

import numpy as np

import fastmlp
from fastmlp.datasets import load_digits
from fastmlp.interop import inference_layers


def _models(dtype, x_train, t_train, x_test, t_test):
    """(name, trained model) pairs, each trained for a few epochs."""
    nets = [(f"MultiLayerNet {a}", fastmlp.MultiLayerNet(64, [32, 32], 10, activation=a,
                                                          dtype=dtype, seed=0))
            for a in ("relu", "sigmoid", "tanh")]
    nets.append(("MultiLayerNetExtend bn", fastmlp.MultiLayerNetExtend(
        64, [32, 32], 10, use_batchnorm=True, dtype=dtype, seed=0)))
    for name, net in nets:
        fastmlp.Trainer(net, x_train, t_train, x_test, t_test, epochs=3, mini_batch_size=50,
                        optimizer="Adam", verbose=False, seed=0).train()
        yield name, net
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # ConvergenceWarning after 5 epochs
        clf = fastmlp.MLPClassifier((32,), max_iter=5, random_state=0, dtype=dtype)
        yield "MLPClassifier", clf.fit(x_train, t_train)


def _output(model, x):
    return model.predict_proba(x) if hasattr(model, "predict_proba") else model.predict(x)


def _torch_state_dict(model):
    """The model's inference layers as an nn.Sequential(Linear, act, Linear, ...) state_dict."""
    layers, activation, _ = inference_layers(model)
    step = 1 if activation == "identity" else 2
    sd = {}
    for i, (W, b) in enumerate(layers):
        sd[f"{i * step}.weight"] = np.ascontiguousarray(W.T)
        sd[f"{i * step}.bias"] = b
    return sd, activation


def _torch_run(sd, activation, x):
    try:
        import torch
    except ImportError:
        return None
    n = len(sd) // 2
    act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[activation]
    mods = []
    for i in range(n):
        W = sd[f"{i * 2}.weight"]
        mods.append(torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.from_numpy(W).dtype))
        if i < n - 1:
            mods.append(act())
    seq = torch.nn.Sequential(*mods)
    seq.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    with torch.no_grad():
        return seq(torch.from_numpy(x)).numpy()


def _maxdiff(a, b):
    return "n/a" if b is None else f"{np.max(np.abs(np.asarray(a, np.float64) - b)):.3g}"


def main():
    import onnxruntime
    from safetensors.numpy import save_file
    (x_train, t_train), (x_test, t_test) = load_digits()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in (np.float32, np.float64):
            xtr, xte = x_train.astype(dtype), x_test.astype(dtype)
            for name, model in _models(dtype, xtr, t_train, xte, t_test):
                ref = _output(model, xte)
                path = os.path.join(tmp, "m.safetensors")
                fastmlp.save(model, path)
                loaded = _output(fastmlp.load(path), xte)
                onnx_path = os.path.join(tmp, "m.onnx")
                fastmlp.export_onnx(model, onnx_path)
                sess = onnxruntime.InferenceSession(onnx_path,
                                                    providers=["CPUExecutionProvider"])
                onnx_out = sess.run(None, {"x": xte})[0]
                sd_diff = torch_diff = "n/a"
                if not hasattr(model, "predict_proba"):
                    sd, activation = _torch_state_dict(model)
                    sd_path = os.path.join(tmp, "sd.safetensors")
                    save_file(sd, sd_path)
                    back = fastmlp.from_torch_state_dict(sd_path, activation=activation)
                    sd_diff = _maxdiff(ref, back.predict(xte))
                    torch_diff = _maxdiff(ref, _torch_run(sd, activation, xte))
                rows.append((np.dtype(dtype).name, name, f"{np.max(np.abs(ref)):.3g}",
                             _maxdiff(ref, loaded),
                             _maxdiff(ref, onnx_out), sd_diff, torch_diff))
    head = ("dtype", "model", "max |output|", "save/load", "onnx", "torch sd", "torch")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"(max |difference| over the {len(x_test)} test digits; onnxruntime "
          f"{onnxruntime.__version__})")


if __name__ == "__main__":
    main()
