"""What fastmlp's estimators check before they change anything: scikit-learn's presence,
every hyper-parameter (``checked_params``), random states and sample weights."""
import math
import numbers

import numpy as np

from ._random import check_seed, generator
from ._validation import check_dtype

_MIN_SKLEARN = (1, 6)
_INSTALL_HINT = ("fastmlp's MLPClassifier and MLPRegressor need scikit-learn >= 1.6: "
                 "pip install fastmlp[sklearn]  (or: pip install 'scikit-learn>=1.6')")


def version_tuple(text):
    """``(major, minor)`` of a version string such as '1.9.1' or '1.15.0rc1'."""
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _sklearn_version():
    import sklearn
    return version_tuple(sklearn.__version__)


try:  # only the base classes at import time; everything else is imported where used
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.metaestimators import available_if
    if _sklearn_version() < _MIN_SKLEARN:
        raise ImportError(f"scikit-learn {_sklearn_version()} is too old")
    SKLEARN_ERROR = None
except ImportError as _exc:  # scikit-learn missing or too old: the classes exist but refuse to build
    SKLEARN_ERROR = _exc

    class BaseEstimator:
        """Stand-in used when scikit-learn is not installed."""

        def __new__(cls, *args, **kwargs):
            raise ImportError(_INSTALL_HINT) from SKLEARN_ERROR

    class ClassifierMixin:
        pass

    class RegressorMixin:
        pass

    def available_if(check):
        """Stand-in: the estimators cannot be built without scikit-learn anyway."""
        return lambda method: method


SOLVERS = ("sgd", "adam", "lbfgs", "momentum", "nesterov", "adagrad", "rmsprop")
ACTIVATIONS = {"relu": "relu", "logistic": "sigmoid", "tanh": "tanh", "identity": "identity"}
LEARNING_RATES = ("constant", "invscaling", "adaptive")
FEATURE_ATTRS = ("n_features_in_", "feature_names_in_")   # set by validate_data(reset=True)


# ----------------------------------------------------------------------------- helpers

def is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_real(value, name, low, high=math.inf, low_open=False, high_open=False):
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    bad_high = value >= high if high_open else value > high
    if math.isnan(value) or bad_low or bad_high:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value}")
    return value


def make_rng(random_state):
    """A numpy Generator from None, an int, a Generator or a legacy RandomState, by
    scikit-learn's convention: None draws from numpy's global random state (so
    ``np.random.seed(s)`` before ``fit`` repeats it), see ``fastmlp._random``."""
    return generator(check_random_state(random_state), "random_state", ValueError)


def check_random_state(random_state):
    """``random_state`` if :func:`make_rng` takes it, else a ValueError; draws nothing."""
    return check_seed(random_state, "random_state", ValueError)


def as_weights(sample_weight, n_samples, dtype):
    """Validated non-negative finite float weights of shape (n_samples,), not all zero."""
    sw = np.asarray(sample_weight)
    if sw.ndim == 0:
        sw = np.full(n_samples, sw)
    if sw.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be real numbers, got dtype {sw.dtype}")
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {sw.shape}")
    sw = sw.astype(dtype)  # always a copy: the caller's array is never touched
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight contains NaN or infinity")
    if (sw < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not sw.any():
        raise ValueError("Sample weights must contain at least one non-zero number "
                         "(all sample_weight are zero)")
    return sw


def log_softmax(z):
    """Row-wise log-softmax in float64 (no overflow, no log(0))."""
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def checked_params(est):
    """Every hyper-parameter validated (ValueError/TypeError naming it), before any state changes."""
    hidden = est.hidden_layer_sizes
    if is_int(hidden):
        hidden = [hidden]
    elif isinstance(hidden, (str, bytes)) or not hasattr(hidden, "__iter__"):
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {hidden!r}")
    hidden = list(hidden)
    for h in hidden:
        if not is_int(h):
            raise TypeError(f"hidden_layer_sizes must hold ints, got {h!r}")
        if h <= 0:
            raise ValueError(f"hidden_layer_sizes must be > 0, got {list(hidden)}")
    if est.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}, got {est.activation!r}")
    if est.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {est.solver!r}")
    if est.learning_rate not in LEARNING_RATES:
        raise ValueError(f"learning_rate must be one of {list(LEARNING_RATES)}, "
                         f"got {est.learning_rate!r}")
    batch_size = est.batch_size
    if not (isinstance(batch_size, str) and batch_size == "auto"):
        if not is_int(batch_size):
            raise TypeError(f"batch_size must be 'auto' or an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not is_int(est.max_iter):
        raise TypeError(f"max_iter must be an int, got {est.max_iter!r}")
    if est.max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {est.max_iter}")
    if not is_int(est.max_fun):
        raise TypeError(f"max_fun must be an int, got {est.max_fun!r}")
    if est.max_fun < 1:
        raise ValueError(f"max_fun must be >= 1, got {est.max_fun}")
    n_iter_no_change = est.n_iter_no_change
    if not (is_int(n_iter_no_change) or n_iter_no_change == np.inf):
        raise TypeError(f"n_iter_no_change must be an int or np.inf, got {n_iter_no_change!r}")
    if n_iter_no_change < 1:
        raise ValueError(f"n_iter_no_change must be >= 1, got {n_iter_no_change}")
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "batch_norm"):
        if not isinstance(getattr(est, name), (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {getattr(est, name)!r}")
    if not (isinstance(est.verbose, (bool, np.bool_)) or is_int(est.verbose)):
        raise TypeError(f"verbose must be a bool or an int, got {est.verbose!r}")
    callbacks = est.callbacks
    if callbacks is None:
        callbacks = []
    elif callable(callbacks):
        callbacks = [callbacks]
    else:
        if isinstance(callbacks, (str, bytes)) or not hasattr(callbacks, "__iter__"):
            raise TypeError(f"callbacks must be a list of callables, got {callbacks!r}")
        callbacks = list(callbacks)
        for cb in callbacks:
            if not callable(cb):
                raise TypeError(f"callbacks must be callables cb(estimator, epoch, logs), "
                                f"got {cb!r}")
    return {
        "hidden": hidden,
        "activation": ACTIVATIONS[est.activation],
        "alpha": check_real(est.alpha, "alpha", 0.0),
        "batch_size": batch_size,
        "lr": check_real(est.learning_rate_init, "learning_rate_init", 0.0, low_open=True),
        "power_t": check_real(est.power_t, "power_t", 0.0),
        "tol": check_real(est.tol, "tol", 0.0),
        "momentum": check_real(est.momentum, "momentum", 0.0, 1.0),
        "validation_fraction": check_real(est.validation_fraction, "validation_fraction",
                                           0.0, 1.0, high_open=True),
        "beta_1": check_real(est.beta_1, "beta_1", 0.0, 1.0, high_open=True),
        "beta_2": check_real(est.beta_2, "beta_2", 0.0, 1.0, high_open=True),
        "epsilon": check_real(est.epsilon, "epsilon", 0.0, low_open=True),
        "dtype": None if est.dtype is None else check_dtype(est.dtype),
        "callbacks": callbacks,
        "dropout": check_real(est.dropout, "dropout", 0.0, 1.0, high_open=True),
        "batch_norm": bool(est.batch_norm),
        "max_fun": int(est.max_fun),
    }
