"""What ``fastmlp bench`` measures: the networks, peers, dtypes, data and GEMM workloads.

The fixed definitions every benchmark of fastmlp shares (``fastmlp bench``
and the pytest-benchmark suites in ``bench/``): the four networks of
``shared/bench/peers.py``, the peer names, the random data set the batches
cycle through, and the two pure-numpy workloads timed beside the peers (one
step's matrix products alone, the GEMM-bound limit; the user-side product of
the alternation test). numpy only; nothing here times anything.
"""
import numpy as np

# (layer sizes, batch) of the four networks of shared/bench/peers.py
CONFIGS = [([784, 50, 10], 100), ([784, 100, 100, 10], 128),
           ([784, 256, 256, 10], 256), ([784, 1024, 1024, 10], 512)]
PEERS = ["fastmlp", "numpy", "torch", "sklearn"]
PEER_LABELS = {"fastmlp": "fastmlp", "numpy": "numpy (fastmlp.reference)",
               "torch": "PyTorch", "sklearn": "scikit-learn",
               "onnxruntime": "onnxruntime (export_onnx)"}
ONNX_THREADS = 2          # onnxruntime's intra-op threads at inference (--predict)
PEER_ALIASES = {"reference": "numpy", "pytorch": "torch", "scikit-learn": "sklearn"}
DTYPES = ["float32", "float64"]
DTYPE_ALIASES = {"f32": "float32", "f64": "float64"}
ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity"]   # hidden activations (--activations)
ACTIVATION_ALIASES = {"logistic": "sigmoid"}
# chapter 6's layers with each hidden activation: "relu+bn+dropout" in --activations times
# MultiLayerNetExtend (PyTorch: BatchNorm1d, Dropout(0.5)); named in this order
LAYER_EXTRAS = ["bn", "dropout"]
LAYER_EXTRA_ALIASES = {"batchnorm": "bn", "batch_norm": "bn", "batchnormalization": "bn"}


def split_variant(activation):
    """``(activation, use_batchnorm, use_dropout)`` of a hidden-layer variant such as
    ``relu+bn+dropout`` (as ``fastmlp._bench.options`` writes them)."""
    act, *extras = activation.split("+")
    return act, "bn" in extras, "dropout" in extras


PREDICT_BATCHES = [1, 100, 10000]
N_ROWS = 20000            # rows of the random data set the batches cycle through
SKLEARN_BATCHES = 10      # batches per partial_fit call
LR = 0.1
ALTERNATE_SHAPE = (128, 784, 100)   # the user's numpy product: (128, 784) @ (784, 100), float32


def network_name(sizes):
    """``"784-100-10"`` for the layer sizes ``[784, 100, 10]``."""
    return "-".join(str(s) for s in sizes)


def make_data(dtype, seed=1):
    """The fixed random data set: X (N_ROWS, 784) in [0, 1) of ``dtype``, labels (N_ROWS,) int64."""
    rng = np.random.default_rng(seed)
    X = rng.random((N_ROWS, 784)).astype(dtype)
    T = rng.integers(0, 10, N_ROWS)
    return X, T


def batch_start(i, rows):
    """First row of batch number ``i`` when each batch takes ``rows`` rows: cycles the data."""
    return (i * rows) % (N_ROWS - rows + 1)


def gemm_work(sizes, batch, dtype):
    """One step's matrix products at numpy's rate: (call, flops per step)."""
    rng = np.random.default_rng(0)
    layers, flops = [], 0
    for i, (k, m) in enumerate(zip(sizes[:-1], sizes[1:])):
        x = rng.random((batch, k)).astype(dtype)
        W = rng.random((k, m)).astype(dtype)
        d = rng.random((batch, m)).astype(dtype)
        out, dW, dx = np.empty((batch, m), dtype), np.empty((k, m), dtype), np.empty((batch, k), dtype)
        layers.append((i > 0, x, W, d, out, dW, dx))
        flops += 2 * batch * k * m * (3 if i > 0 else 2)

    def call(_):
        for need_dx, x, W, d, out, dW, dx in layers:
            np.matmul(x, W, out=out)          # forward
            np.matmul(x.T, d, out=dW)         # weight gradient
            if need_dx:
                np.matmul(d, W.T, out=dx)     # input gradient, not needed for the first layer
    return call, flops


def user_matmul():
    """The user-side product of the alternation test: ``call(i)`` does one float32 matmul."""
    m, k, n = ALTERNATE_SHAPE
    rng = np.random.default_rng(2)
    a = rng.random((m, k), dtype=np.float32)
    w = rng.random((k, n), dtype=np.float32)
    out = np.empty((m, n), np.float32)
    return lambda i: np.matmul(a, w, out=out)
