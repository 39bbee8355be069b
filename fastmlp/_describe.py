"""One-line descriptions of fastmlp's objects: the ``__repr__`` of networks, layers,
optimizers and the Trainer.

Each says what the object is and the settings that matter, never its arrays, so a
network of millions of weights prints in one line: ``MultiLayerNet(784-100-10, relu,
float32)``, ``Affine(784→100, float32)``, ``Adam(lr=0.001, beta1=0.9, beta2=0.999,
eps=1e-08)``. The attributes are public and may hold anything, so a description never
raises: what it cannot read it shows as ``?``. Pure Python and numpy, so the reference
twins share it.
"""
import inspect

import numpy as np

# what a network's repr shows first, not as name=value
_NETWORK_SHAPE_KEYS = ("input_size", "hidden_size", "hidden_size_list", "output_size",
                       "activation", "dtype")


def _number(value):
    """A hyper-parameter in 6 significant digits (``0.002``, ``1e-08``), else its repr."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return f"{value:.6g}"
    return repr(value)


def _dtype(dtype):
    try:
        return np.dtype(dtype).name
    except TypeError:
        return "?"


def network_repr(net):
    """``MultiLayerNet(64-100-10, relu, float64)``, then any setting of ``config()`` that is
    not the constructor's default (``weight_decay_lambda=0.0001``, ``loss='mse'``, ...)."""
    name = type(net).__name__
    try:
        sizes = [net.input_size, *net.hidden_size_list, net.output_size]
        head = f"{'-'.join(str(n) for n in sizes)}, {net.activation}, {_dtype(net.dtype)}"
    except (AttributeError, TypeError):
        return f"{name}(?)"
    try:
        config = net.config()
        defaults = {k: p.default for k, p in inspect.signature(type(net)).parameters.items()}
    except Exception:   # noqa: BLE001 - a mutated network still describes its shape
        return f"{name}({head})"
    extra = [f"{k}={_number(v)}" for k, v in config.items()
             if k not in _NETWORK_SHAPE_KEYS and k in defaults and not _same(v, defaults[k])]
    return f"{name}({', '.join([head, *extra])})"


def _same(value, default):
    try:
        return bool(value == default)
    except Exception:   # noqa: BLE001 - e.g. an array compared with a number
        return False


def layer_repr(layer):
    """``Affine(784→100, float32)``, ``BatchNormalization(100, momentum=0.9, float32)``,
    ``Dropout(dropout_ratio=0.5)``, or ``Relu()`` for a layer without settings."""
    name = type(layer).__name__
    W = getattr(layer, "W", None)
    if W is not None:
        shape = np.shape(W)
        io = f"{shape[0]}→{shape[1]}" if len(shape) == 2 else "?"
        return f"{name}({io}, {_dtype(getattr(W, 'dtype', None))})"
    gamma = getattr(layer, "gamma", None)
    if gamma is not None:
        return (f"{name}({np.size(gamma)}, momentum={_number(getattr(layer, 'momentum', '?'))}, "
                f"{_dtype(getattr(gamma, 'dtype', None))})")
    if hasattr(layer, "dropout_ratio"):
        return f"{name}(dropout_ratio={_number(layer.dropout_ratio)})"
    return f"{name}()"


def optimizer_repr(opt):
    """``Adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08)``: the hyper-parameters its class
    names in ``hyper_bounds`` (the current ``lr``, after any decay), and a ``variant``."""
    names = [name for name, _ in getattr(type(opt), "hyper_bounds", (("lr", None),))]
    parts = [f"{n}={_number(getattr(opt, n, '?'))}" for n in names]
    if getattr(type(opt), "variants", ()):
        parts.append(f"variant={getattr(opt, 'variant', '?')!r}")
    return f"{type(opt).__name__}({', '.join(parts)})"


def trainer_repr(trainer):
    """``Trainer(network=..., optimizer=..., epochs=30, batch_size=32)``, then ``sampling``
    when not the book's, ``lr_decay`` when set and the epoch once training has started."""
    parts = [f"network={trainer.network!r}", f"optimizer={trainer.optimizer!r}",
             f"epochs={trainer.epochs}", f"batch_size={trainer.batch_size}"]
    if getattr(trainer, "sampling", "book") != "book":
        parts.append(f"sampling={trainer.sampling!r}")
    if getattr(trainer, "lr_decay", None) is not None:
        parts.append(f"lr_decay={_number(trainer.lr_decay)}")
    if getattr(trainer, "current_iter", 0):
        parts.append(f"current_epoch={trainer.current_epoch}")
    return f"{type(trainer).__name__}({', '.join(parts)})"
