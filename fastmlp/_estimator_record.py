"""The estimators' persistence: their record in a fastmlp file, and their pickled state.

``MLPClassifier`` / ``MLPRegressor`` keep thin methods (``to_record``,
``from_record``, ``check_record``, ``__getstate__``, ``__setstate__``) that call
this module; ``fastmlp.io`` calls those methods and knows nothing of an
estimator's attributes. The network and optimizer inside are written and read
by ``fastmlp._records`` through their own protocol (``config()`` /
``from_config``, ``state_dict()`` / ``load_state_dict``), also for pickling.

An estimator record (format version 1, unchanged)::

    {"class": "MLPClassifier", "params": {constructor parameters as JSON},
     "params_not_saved": [names of callables, Generators, ...],
     "state": {fitted attributes, the shuffling stream, the patience counter, ...},
     "network": {network record}, "optimizer": {optimizer record} | null}

with the arrays ``network/*``, ``optimizer/*``, ``best/*`` (early stopping's best
parameters) and ``classes`` (number or string labels). :func:`check_record`
validates a record read from a file, allocating nothing, before io reads any
array; :func:`from_record` then builds the estimator.
"""
import math

import numpy as np

from ._estimator_outputs import OUT_ACTIVATIONS, REGRESSION_LOSSES
from ._estimator_params import check_random_state, is_int, is_real
from ._records import (count, jfloat, network_from_record, network_plan,
                       network_record, number, optimizer_from_record, optimizer_plan,
                       optimizer_record, pfloat, prefixed, record)
from ._validation import check_dtype
from .networks import MultiLayerNet
from .networks_extend import MultiLayerNetExtend

_STATE_KEYS = ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "validation_scores_",
               "validation_loss_curve_", "best_validation_score_", "n_features_in_",
               "feature_names_in_", "n_outputs_", "n_layers_", "out_activation_",
               "stop_training_", "no_improvement_count", "dtype", "split_seed",
               "optimizer_key", "rng", "best_params")


def _is_classifier(est_or_cls):
    return est_or_cls._loss_name == "cross_entropy"


def _n_classes(out_activation, n_outputs):
    """The number of classes a classifier with this output has (None: 1 or 2)."""
    return None if out_activation == "logistic" and n_outputs == 1 else n_outputs


# ----------------------------------------------------------------------------- fastmlp.save

#: Hyper-parameters added after files of format 1 were first written: a record holds
#: them only when they differ from these defaults, so a model without them saves the
#: bytes it always did (and a file without them loads them at their defaults).
LATER_PARAMS = {"dropout": 0.0, "batch_norm": False, "max_fun": 15000}


def to_record(est, arrays):
    """The fitted estimator as a JSON-able record, its arrays added to ``arrays``."""
    est._check_fitted()
    hyper = est.get_params(deep=False)
    if hyper.get("dropout") or hyper.get("batch_norm"):
        raise TypeError("save does not yet support an estimator with dropout or batch_norm "
                        "(its network is a MultiLayerNetExtend); pickle it instead")
    params, dropped = {}, []
    for name, value in hyper.items():
        if name in LATER_PARAMS and value is not True and value == LATER_PARAMS[name]:
            continue
        encoded = _encode_param(name, value)
        if encoded is _NOT_STORABLE:
            dropped.append(name)
        else:
            params[name] = encoded
    jf = jfloat
    state = {
        "n_iter_": int(est.n_iter_), "t_": int(est.t_), "loss_": jf(est.loss_),
        "best_loss_": jf(est.best_loss_), "loss_curve_": [jf(v) for v in est.loss_curve_],
        "validation_scores_": (None if est.validation_scores_ is None
                               else [jf(v) for v in est.validation_scores_]),
        "validation_loss_curve_": (None if est.validation_loss_curve_ is None
                                   else [jf(v) for v in est.validation_loss_curve_]),
        "best_validation_score_": jf(est.best_validation_score_),
        "n_features_in_": int(est.n_features_in_),
        "feature_names_in_": (None if not hasattr(est, "feature_names_in_")
                              else [str(v) for v in est.feature_names_in_]),
        "n_outputs_": int(est.n_outputs_), "n_layers_": int(est.n_layers_),
        "out_activation_": est.out_activation_, "stop_training_": bool(est.stop_training_),
        "no_improvement_count": int(est._no_improvement_count),
        "dtype": np.dtype(est._dtype).name, "split_seed": int(est._split_seed),
        "optimizer_key": list(est._opt_key) if est._optimizer is not None else None,
        "rng": _rng_state(est._rng),
        "best_params": None if est._best_params is None else list(est._best_params),
    }
    if est._best_params is not None:
        for k, v in est._best_params.items():
            arrays[f"best/{k}"] = v
    if _is_classifier(est):
        state["classes"] = _encode_classes(est.classes_, arrays)
    return {"class": type(est).__name__, "params": params, "params_not_saved": dropped,
            "state": state,
            "network": network_record(est._net, "network", arrays),
            "optimizer": (None if est._optimizer is None else
                          optimizer_record(est._optimizer, "optimizer", arrays,
                                           allow_estimator=True))}


# ----------------------------------------------------------------------------- fastmlp.load

def from_record(cls, rec, arrays):
    """Inverse of :func:`to_record`: a ``cls`` estimator from a record :func:`check_record` passed."""
    params = {k: _decode_param(k, v) for k, v in rec["params"].items()}
    est = cls(**params)
    st = rec["state"]
    net = network_from_record(rec["network"], arrays, "network")
    if type(net) is not MultiLayerNet:
        raise ValueError("an estimator's network must be fastmlp's compiled MultiLayerNet")
    est._net = net
    est._dtype = np.dtype(st["dtype"]).type
    if est._dtype is not net.dtype:
        raise ValueError("the estimator's dtype differs from its network's")
    est._optimizer = (None if rec["optimizer"] is None else
                      optimizer_from_record(rec["optimizer"], arrays, "optimizer",
                                            allow_estimator=True))
    est._opt_key = None if st["optimizer_key"] is None else tuple(st["optimizer_key"])
    est._rng = _rng_from_state(st["rng"])
    est._split_seed = int(st["split_seed"])
    est._no_improvement_count = int(st["no_improvement_count"])
    est._best_params = (None if st["best_params"] is None else
                        {k: np.array(arrays[f"best/{k}"], copy=True) for k in st["best_params"]})
    est.n_iter_, est.t_ = int(st["n_iter_"]), int(st["t_"])
    est.loss_, est.best_loss_ = pfloat(st["loss_"]), pfloat(st["best_loss_"])
    est.loss_curve_ = [pfloat(v) for v in st["loss_curve_"]]
    for name in ("validation_scores_", "validation_loss_curve_"):
        setattr(est, name, None if st[name] is None else [pfloat(v) for v in st[name]])
    est.best_validation_score_ = pfloat(st["best_validation_score_"])
    est.n_features_in_ = int(st["n_features_in_"])
    if st["feature_names_in_"] is not None:
        est.feature_names_in_ = np.array([str(v) for v in st["feature_names_in_"]], dtype=object)
    est.n_outputs_, est.n_layers_ = int(st["n_outputs_"]), int(st["n_layers_"])
    est.out_activation_ = str(st["out_activation_"])
    est.stop_training_ = bool(st["stop_training_"])
    if _is_classifier(cls):
        est.classes_ = _decode_classes(st["classes"], arrays)
        n_classes = _n_classes(est.out_activation_, est.n_outputs_)
        if est.classes_.ndim != 1 or len(est.classes_) not in (
                (1, 2) if n_classes is None else (n_classes,)):
            raise ValueError("classes_ does not match the number of outputs")
    if net.input_size != est.n_features_in_ or net.output_size != est.n_outputs_:
        raise ValueError("the network's sizes do not match n_features_in_ / n_outputs_")
    return est


def check_record(cls, rec):
    """Check a ``cls`` record read from a file, allocating nothing big.

    Every parameter as the constructor and ``fit`` would check it, every fitted
    value, and the network and optimizer records. Returns the arrays the record
    needs, ``{name: (dtype or None, shape or None)}``, for io to match against the
    file's array table before it reads any.
    """
    record(rec, ("class", "params", "params_not_saved", "state", "network", "optimizer"),
           "the estimator record")
    if not isinstance(rec["params"], dict):
        raise ValueError("the estimator's params must be a JSON object")
    if not isinstance(rec["params_not_saved"], list) or not all(
            isinstance(n, str) for n in rec["params_not_saved"]):
        raise ValueError("params_not_saved must be a list of names")
    try:
        params = {k: _decode_param(k, v) for k, v in rec["params"].items()}
        est = cls(**params)
        est._checked_params()           # what fit would reject: NaN alpha, lr <= 0, ...
        check_random_state(est.random_state)   # draws nothing (None: the global state)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"invalid estimator parameter in the file: {exc}") from None
    net_cls, config, params = network_plan(rec["network"])
    if net_cls is not MultiLayerNet:
        raise ValueError("an estimator's network must be fastmlp's compiled MultiLayerNet")
    losses = (("cross_entropy", "logistic") if _is_classifier(cls)
              else (REGRESSION_LOSSES[est.loss],))
    if config["loss"] not in losses:
        raise ValueError(f"a {rec['class']}'s network must have loss {' or '.join(losses)}")
    arrays = prefixed("network", params)
    st = record(rec["state"], _STATE_KEYS, "the estimator state", optional=("classes",))
    _check_state(cls, rec, st, config)
    best = st["best_params"]
    if best is not None:
        if best != list(params):
            raise ValueError("best_params does not list the network's parameters")
        arrays.update(prefixed("best", params))
    n_classes = _n_classes(st["out_activation_"], config["output_size"])
    if _is_classifier(cls):
        classes = st.get("classes")
        if isinstance(classes, dict) and set(classes) == {"array"} and classes["array"] == "classes":
            arrays["classes"] = (None, None if n_classes is None else (n_classes,))
        elif isinstance(classes, dict) and set(classes) == {"strings"}:
            labels = classes["strings"]
            if not isinstance(labels, list) or len(labels) not in (
                    (1, 2) if n_classes is None else (n_classes,)) or not all(
                    isinstance(c, str) for c in labels):
                raise ValueError("the class labels must be one string per output")
        else:
            raise ValueError(f"invalid classes record {classes!r:.100}")
    elif "classes" in st:
        raise ValueError("a regressor has no classes")
    if rec["optimizer"] is not None:
        arrays.update(optimizer_plan(rec["optimizer"], "optimizer", params,
                                     allow_estimator=True)[3])
    return arrays


def _check_state(cls, rec, st, config):
    """The fitted values of an estimator record: counters, histories, sizes, rng."""
    count(st["n_iter_"], "n_iter_")
    count(st["t_"], "t_")
    count(st["no_improvement_count"], "no_improvement_count")
    count(st["split_seed"], "split_seed", 2**64 - 1)
    for name in ("loss_", "best_loss_", "best_validation_score_"):
        number(st[name], name)
    for name in ("loss_curve_", "validation_scores_", "validation_loss_curve_"):
        values = st[name]
        if values is None and name != "loss_curve_":
            continue
        if not isinstance(values, list):
            raise ValueError(f"{name} must be a list of numbers")
        for v in values:
            number(v, f"{name} entry")
    n_features, n_outputs = config["input_size"], config["output_size"]
    if st["n_features_in_"] != n_features or st["n_outputs_"] != n_outputs:
        raise ValueError(f"n_features_in_ / n_outputs_ ({st['n_features_in_']!r:.30}, "
                         f"{st['n_outputs_']!r:.30}) do not match the network's sizes "
                         f"({n_features}, {n_outputs})")
    if st["n_layers_"] != len(config["hidden_size_list"]) + 2:
        raise ValueError("n_layers_ does not match the network")
    out = OUT_ACTIVATIONS[config["loss"]]
    if st["out_activation_"] != out:
        raise ValueError(f"out_activation_ must be {out!r} for a {rec['class']} whose network "
                         f"has loss {config['loss']!r}")
    names = st["feature_names_in_"]
    if names is not None and (not isinstance(names, list) or len(names) != n_features
                              or not all(isinstance(n, str) for n in names)):
        raise ValueError("feature_names_in_ must be None or one name per feature")
    if not isinstance(st["stop_training_"], bool):
        raise ValueError("stop_training_ must be a bool")
    if st["dtype"] != config["dtype"]:
        raise ValueError("the estimator's dtype differs from its network's")
    key = st["optimizer_key"]
    if (key is None) != (rec["optimizer"] is None) or (key is not None and not (
            isinstance(key, list) and len(key) == 3 and isinstance(key[0], str)
            and all(k is None or isinstance(k, bool) for k in key[1:]))):
        raise ValueError(f"invalid optimizer_key {key!r:.100}")
    if key is not None and rec["optimizer"]["class"] != _optimizer_class_of(key):
        raise ValueError(f"the optimizer record ({rec['optimizer']['class']!r:.30}) is not what "
                         f"solver {key[0]!r:.30} trains with")
    if st["rng"] is not None and not isinstance(st["rng"], dict):
        raise ValueError("invalid rng state")
    try:
        _rng_from_state(st["rng"])
    except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as exc:
        raise ValueError(f"invalid rng state: {type(exc).__name__}: {exc}") from None


def _optimizer_class_of(key):
    """The optimizer record class an estimator's ``optimizer_key`` (solver, nesterov, plain)
    makes (``BaseMLP._make_optimizer``); None for lbfgs, which keeps no optimizer."""
    solver, nesterov, plain = key
    if solver == "sgd":
        return "SGD" if plain else "SGDNesterov" if nesterov else "Momentum"
    return {"adam": "Adam", "momentum": "Momentum", "nesterov": "Nesterov",
            "adagrad": "AdaGrad", "rmsprop": "RMSprop"}.get(solver)


# ----------------------------------------------------------------------------- values

_NOT_STORABLE = object()


def _encode_param(name, value):
    """A constructor parameter as JSON, or _NOT_STORABLE (callbacks, Generator random_state)."""
    if name == "dtype":
        return None if value is None else np.dtype(value).name
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if is_int(value):
        return int(value)
    if is_real(value):
        value = float(value)
        return value if math.isfinite(value) else {"float": jfloat(value)}
    if name == "hidden_layer_sizes" and hasattr(value, "__iter__"):
        items = list(value)
        if all(is_int(v) for v in items):
            return {"list" if isinstance(value, list) else "tuple": [int(v) for v in items]}
    return _NOT_STORABLE


def _decode_param(name, value):
    """Inverse of :func:`_encode_param`."""
    if name == "dtype":
        return None if value is None else check_dtype(value)
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return pfloat(value["float"])
        for kind, make in (("tuple", tuple), ("list", list)):
            if set(value) == {kind} and isinstance(value[kind], list) and \
                    all(is_int(v) for v in value[kind]):
                return make(value[kind])
        raise ValueError(f"invalid value for parameter {name}: {value!r}")
    if value is not None and not isinstance(value, (str, bool, int, float)):
        raise ValueError(f"invalid value for parameter {name}: {value!r}")
    return value


def _rng_state(rng):
    """The shuffling stream's state as JSON (PCG64), or None for other bit generators."""
    state = rng.bit_generator.state
    if state.get("bit_generator") != "PCG64":
        return None  # other bit generators: a fresh stream after load (documented)
    return {"bit_generator": "PCG64", "state": {"state": int(state["state"]["state"]),
                                                "inc": int(state["state"]["inc"])},
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}


def _rng_from_state(state):
    """Inverse of :func:`_rng_state`."""
    if state is None:
        return np.random.default_rng()
    if state.get("bit_generator") != "PCG64":
        raise ValueError(f"unknown bit generator {state.get('bit_generator')!r}")
    bit_generator = np.random.PCG64()
    bit_generator.state = {"bit_generator": "PCG64",
                           "state": {"state": int(state["state"]["state"]),
                                     "inc": int(state["state"]["inc"])},
                           "has_uint32": int(state["has_uint32"]),
                           "uinteger": int(state["uinteger"])}
    return np.random.Generator(bit_generator)


def _encode_classes(classes, arrays):
    if classes.dtype.kind in "biufU":
        arrays["classes"] = classes
        return {"array": "classes"}
    if classes.dtype.kind == "O" and all(isinstance(c, str) for c in classes):
        return {"strings": [str(c) for c in classes]}
    raise TypeError(f"fastmlp.save stores class labels that are numbers, bools or strings; "
                    f"classes_ has dtype {classes.dtype} with {type(classes[0]).__name__} values")


def _decode_classes(rec, arrays):
    if set(rec) == {"array"}:
        return np.array(arrays[rec["array"]], copy=True)
    if set(rec) == {"strings"} and all(isinstance(c, str) for c in rec["strings"]):
        return np.array(rec["strings"], dtype=object)
    raise ValueError(f"invalid classes record {rec!r}")


# ----------------------------------------------------------------------------- pickle

def pickled_state(state):
    """``__getstate__``'s dict with the network as its config and parameters (no compiled
    objects inside the pickle)."""
    state = dict(state)
    net = state.pop("_net", None)
    if net is not None:
        state["_net_state"] = {"config": net.config(),
                               "params": dict(net.params)}
        if isinstance(net, MultiLayerNetExtend):
            state["_net_state"]["running"] = net.running_statistics()
            state["_net_state"]["stream"] = net.rng
    return state


def split_pickled_state(state):
    """``(attributes, network state or None)`` from a pickled dict, for ``__setstate__``."""
    state = dict(state)
    return state, state.pop("_net_state", None)


def restore_unpickled(est, net_state):
    """After ``__setstate__`` set the attributes: rebuild the network, and give the optimizer
    and the best parameters writeable copies of their arrays (they may come back read-only,
    e.g. memmapped)."""
    if net_state is not None:
        # pickles made before networks had config() lack weight_decay_lambda (always 0 here)
        config = {"weight_decay_lambda": 0.0, **net_state["config"]}
        if "use_dropout" in config:   # dropout or batch norm: with its statistics and stream
            est._net = MultiLayerNetExtend.from_config(config, net_state["params"])
            est._net.set_running_statistics(net_state.get("running", []))
            est._net.set_stream(net_state.get("stream"))
        else:
            est._net = MultiLayerNet.from_config(config, net_state["params"])
    opt = est.__dict__.get("_optimizer")
    if opt is not None:
        opt.load_state_dict(opt.state_dict())
    best = est.__dict__.get("_best_params")
    if best is not None:
        est._best_params = {k: np.array(a, copy=True) for k, a in best.items()}
