"""JSON records of networks and optimizers, and the checks a record read from a file passes.

The model description in a fastmlp file (``fastmlp.io``) is made of records: a
network's is its class, implementation and ``config()``; an optimizer's its
class, implementation, hyper-parameters, the parameter names its state is kept
for, and Adam's step count. This module writes and reads them through the
objects' own public protocol (``net.config()`` / ``Cls.from_config``,
``opt.state_dict()`` / ``opt.load_state_dict``), so neither io nor the
estimator knows a network's or an optimizer's attributes. Class names are
looked up in fixed tables of public classes; nothing a file names is imported.

Reading is hardened: every record is checked (:func:`network_plan`,
:func:`optimizer_plan`) before anything is built, and the plans say which
arrays, of which dtype and shape, the record implies, so that io can match the
array table before it reads a byte of array data. The checks (:func:`record`,
:func:`size`, :func:`count`, :func:`number`, :func:`choice`,
:func:`construct`) are shared with the estimator's record
(``fastmlp._estimator_record``). The records keep the names version 1 files used,
so both versions read through the same checks.
"""
import inspect
import math

import numpy as np

from ._validation import check_dtype

MAX_LAYERS = 1_000              # hidden layers of a network
MAX_SIZE = 2**62                # a layer width or an array dimension
MAX_COUNT = 2**53               # step and epoch counters (exact as floats)

__all__ = ["jfloat", "network_arrays", "network_from_record", "network_plan", "network_record",
           "optimizer_from_record", "optimizer_plan", "optimizer_record", "pfloat"]


# ----------------------------------------------------------------------------- JSON values

def jfloat(x):
    """A float for strict JSON: non-finite values become the strings 'NaN', 'Infinity', '-Infinity'."""
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def pfloat(v):
    """Inverse of :func:`jfloat`."""
    if v is None:
        return None
    if isinstance(v, str):
        if v not in ("NaN", "Infinity", "-Infinity"):
            raise ValueError(f"expected a number, got {v!r}")
        return float(v.replace("Infinity", "inf"))
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"expected a number, got {v!r}")
    return float(v)


# ----------------------------------------------------------------------------- record checks

def record(rec, keys, what, optional=()):
    """``rec`` as a JSON object with every one of ``keys``, and nothing but ``keys`` and ``optional``."""
    if not isinstance(rec, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(rec).__name__}")
    for k in keys:
        if k not in rec:
            raise ValueError(f"{what} has no {k!r} entry")
    extra = sorted(set(rec) - set(keys) - set(optional))
    if extra:
        raise ValueError(f"{what} has unknown entries {extra[:5]}")
    return rec


def size(v, what):
    """A layer width: an integer in [1, MAX_SIZE]."""
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIZE:
        raise ValueError(f"{what} must be an integer in [1, {MAX_SIZE}], got {v!r:.60}")
    return v


def count(v, what, maximum=MAX_COUNT):
    """A step or epoch counter: an integer in [0, maximum]."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= maximum:
        raise ValueError(f"{what} must be an integer in [0, {maximum}], got {v!r:.60}")
    return v


def number(v, what, minimum=None, allow_minimum=True):
    """A float from the file (pfloat), finite and >= or > ``minimum`` when one is given."""
    try:
        x = pfloat(v)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if minimum is not None:
        if x is None or not math.isfinite(x) or x < minimum or (x == minimum and not allow_minimum):
            bound = ">=" if allow_minimum else ">"
            raise ValueError(f"{what} must be finite and {bound} {minimum}, got {x}")
    return x


def choice(v, choices, what):
    """``v`` if it is one of the strings ``choices``."""
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{what} must be one of {list(choices)}, got {v!r:.60}")
    return v


def construct(make, what, /, *args, **kwargs):
    """``make(*args, **kwargs)``; its own argument checks become a ValueError naming ``what``."""
    try:
        return make(*args, **kwargs)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"invalid {what} in the file: {exc}") from None


def prefixed(prefix, specs):
    """``specs`` with every key put under ``prefix/``."""
    return {f"{prefix}/{k}": v for k, v in specs.items()}


def check_arrays(expected, arrays):
    """Each ``name: (dtype or None, shape or None)`` of ``expected`` is in ``arrays`` and matches."""
    for name, (dtype, shape) in expected.items():
        a = arrays.get(name)
        if a is None:
            raise ValueError(f"array {name} is missing")
        if (dtype is not None and a.dtype != dtype) or (shape is not None and a.shape != shape):
            raise ValueError(f"array {name} holds {a.dtype.str}{a.shape}, expected "
                             f"{'' if dtype is None else dtype.str}{'' if shape is None else shape}")


def _lookup(table, key, what):
    for k, cls in table.items():
        if k == key:
            return cls
    raise ValueError(f"unknown {what} {key!r}")


def _key_of(obj, table):
    for k, cls in table.items():
        if type(obj) is cls:
            return k
    return None


# ----------------------------------------------------------------------------- networks

def network_classes(extended=False):
    """The fixed table ``(class name, implementation) -> class`` of the networks a file holds
    (``extended``: ``MultiLayerNetExtend`` too, which a plain ``fastmlp.save`` holds and an
    estimator's record does not)."""
    from . import networks, networks_extend, reference
    table = {("MultiLayerNet", "compiled"): networks.MultiLayerNet,
             ("TwoLayerNet", "compiled"): networks.TwoLayerNet,
             ("MultiLayerNet", "reference"): reference.MultiLayerNet,
             ("TwoLayerNet", "reference"): reference.TwoLayerNet}
    if extended:
        table[("MultiLayerNetExtend", "compiled")] = networks_extend.MultiLayerNetExtend
        table[("MultiLayerNetExtend", "reference")] = reference.MultiLayerNetExtend
    return table


_EXTEND = "MultiLayerNetExtend"
_STATS = ("running_mean", "running_var")


def network_record(net, prefix, arrays, extended=False):
    """(record, arrays[prefix/...] filled) for a compiled or reference network.

    A ``MultiLayerNetExtend``'s record also lists, under ``running``, the batch-norm
    running statistics it holds (``running_mean{i}``, ``running_var{i}``: a layer has
    none before its first forward pass); they are stored beside the parameters.
    """
    key = _key_of(net, network_classes(extended))
    if key is None:
        extend = "MultiLayerNetExtend, " if extended else ""
        raise TypeError(f"save supports fastmlp's {extend}MultiLayerNet and TwoLayerNet "
                        f"(compiled or fastmlp.reference) and fitted MLPClassifier/MLPRegressor, "
                        f"got {type(net).__module__}.{type(net).__name__}")
    dtype = np.dtype(check_dtype(net.dtype))
    config = net.config()
    keys = network_classes(extended)[key].CONFIG_KEYS
    config = {k: config[k] for k in keys}           # the file's key order
    if "weight_decay_lambda" in config:               # a NaN is written, and refused by the check
        config["weight_decay_lambda"] = jfloat(config["weight_decay_lambda"])
    if "dropout_ration" in config:
        config["dropout_ration"] = jfloat(config["dropout_ration"])
    for name, p in net.params.items():
        if not isinstance(p, np.ndarray) or p.dtype != dtype:
            raise TypeError(f"network parameter {name!r} is not a {dtype.name} array")
        arrays[f"{prefix}/{name}"] = p
    rec = {"class": key[0], "implementation": key[1], "config": config,
           "params": list(net.params)}
    if key[0] == _EXTEND:
        running = []
        for i, pair in enumerate(net.running_statistics(), start=1):
            for stat, a in zip(_STATS, pair):
                if a is None:
                    continue
                if not isinstance(a, np.ndarray) or a.dtype != dtype:
                    raise TypeError(f"batch-norm statistic {stat}{i} is not a {dtype.name} "
                                    f"array")
                _check_statistic(f"{stat}{i}", a)
                arrays[f"{prefix}/{stat}{i}"] = a
                running.append(f"{stat}{i}")
        rec["running"] = running
    return rec


def _check_statistic(name, a):
    """A running statistic's values: finite, and a variance never negative."""
    if not np.all(np.isfinite(a)):
        raise ValueError(f"batch-norm statistic {name} holds non-finite values")
    if name.startswith("running_var") and np.any(a < 0):
        raise ValueError(f"batch-norm statistic {name} holds negative variances")


def _float_dtype(name):
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {name!r}")
    return name


def _flag(v, what):
    if not isinstance(v, bool):
        raise ValueError(f"{what} must be true or false, got {v!r:.60}")
    return v


def _network_plan(rec, extended):
    """(cls, config, params, statistics): :func:`network_plan` and the running statistics'
    ``{name: (dtype, shape)}`` (empty but for a ``MultiLayerNetExtend``)."""
    if not isinstance(rec, dict):
        raise ValueError(f"the network record must be a JSON object, got {type(rec).__name__}")
    extend = extended and rec.get("class") == _EXTEND
    record(rec, ("class", "implementation", "config", "params") + (("running",) if extend else ()),
           "the network record")
    key = (rec["class"], rec["implementation"])
    if not all(isinstance(k, str) for k in key):
        raise ValueError("the network's class and implementation must be strings")
    cls = _lookup(network_classes(extended), key, "network class")
    two = key[0] == "TwoLayerNet"
    cfg = record(rec["config"], cls.CONFIG_KEYS, "the network config")
    dtype = _float_dtype(cfg["dtype"])
    n_in = size(cfg["input_size"], "network input_size")
    n_out = size(cfg["output_size"], "network output_size")
    if two:
        hidden = [size(cfg["hidden_size"], "network hidden_size")]
        config = {"input_size": n_in, "hidden_size": hidden[0], "output_size": n_out,
                  "dtype": dtype}
    else:
        listed = cfg["hidden_size_list"]
        if not isinstance(listed, list) or len(listed) > MAX_LAYERS:
            raise ValueError(f"network hidden_size_list must be a list of at most {MAX_LAYERS} "
                             f"integers")
        hidden = [size(h, "network hidden_size_list entry") for h in listed]
        config = {"input_size": n_in, "hidden_size_list": hidden, "output_size": n_out,
                  "activation": choice(cfg["activation"], ("relu", "sigmoid", "tanh", "identity"),
                                       "network activation"),
                  "weight_decay_lambda": number(cfg["weight_decay_lambda"],
                                                "network weight_decay_lambda", 0.0),
                  "dtype": dtype,
                  "loss": choice(cfg["loss"], ("cross_entropy", "mse", "logistic", "poisson"),
                                 "network loss")}
    if extend:
        ratio = number(cfg["dropout_ration"], "network dropout_ration", 0.0)
        if ratio > 1.0:
            raise ValueError(f"network dropout_ration must lie in [0, 1], got {ratio}")
        config.update(use_dropout=_flag(cfg["use_dropout"], "network use_dropout"),
                      dropout_ration=ratio,
                      use_batchnorm=_flag(cfg["use_batchnorm"], "network use_batchnorm"))
    sizes = [n_in, *hidden, n_out]
    dt = np.dtype(dtype).newbyteorder("<")
    params = {}
    for i in range(1, len(sizes)):
        params[f"W{i}"] = (dt, (sizes[i - 1], sizes[i]))
        params[f"b{i}"] = (dt, (sizes[i],))
    stats = {}
    if extend and config["use_batchnorm"]:
        for i, n in enumerate(hidden, start=1):
            params[f"gamma{i}"] = params[f"beta{i}"] = (dt, (n,))
            stats[f"running_mean{i}"] = stats[f"running_var{i}"] = (dt, (n,))
    if rec["params"] != list(params):
        listed = rec["params"] if isinstance(rec["params"], list) else []
        missing = [p for p in params if p not in listed]
        raise ValueError(f"the network's parameter list {rec['params']!r:.200} does not match its "
                         f"config (expected {list(params)!r:.200}"
                         f"{f'; missing {missing!r:.100}' if missing else ''})")
    if extend:
        running = rec["running"]
        if (not isinstance(running, list) or not all(isinstance(r, str) for r in running)
                or running != [s for s in stats if s in running]):
            raise ValueError(f"the network's running statistics {running!r:.200} are not an "
                             f"ordered selection of {list(stats)!r:.200}")
        stats = {s: stats[s] for s in running}
    return cls, config, params, stats


def network_plan(rec, extended=False):
    """Check a network record without allocating anything.

    Returns ``(cls, config, params)``: the class, the checked config for
    ``cls.from_config``, and ``{param name: (dtype, shape)}`` the arrays must match.
    ``extended`` admits ``MultiLayerNetExtend`` (:func:`network_arrays` then also gives
    its running statistics).
    """
    return _network_plan(rec, extended)[:3]


def network_arrays(rec, extended=False):
    """``(params, arrays)`` of a checked network record: the parameters' ``{name: (dtype,
    shape)}``, and those of every array the record needs (running statistics too)."""
    params, stats = _network_plan(rec, extended)[2:]
    return params, dict(params, **stats)


def network_from_record(rec, arrays, prefix, extended=False):
    """The network a record describes, its parameters copied from ``arrays[prefix/...]``.

    The record is checked, and the arrays against it, before the network is built, so
    nothing is allocated for a network the file does not hold.
    """
    cls, config, params, stats = _network_plan(rec, extended)
    check_arrays(prefixed(prefix, dict(params, **stats)), arrays)
    for name in stats:
        _check_statistic(name, arrays[f"{prefix}/{name}"])
    values = {name: arrays[f"{prefix}/{name}"] for name in params}
    net = construct(cls.from_config, "network config", config, values)
    if rec["class"] == _EXTEND and extended:
        pairs = [tuple(arrays.get(f"{prefix}/{s}{i}") if f"{s}{i}" in stats else None
                       for s in _STATS)
                 for i in range(1, len(net.running_statistics()) + 1)]
        construct(net.set_running_statistics, "batch-norm statistics", pairs)
    return net


# ----------------------------------------------------------------------------- optimizers
# A record names the rule, not the Python class: version 1 files wrote the estimator's
# sklearn-flavoured rules as ("Adam", "estimator") (Adam with its own epsilon) and
# ("SGDNesterov", "estimator"); both are public optimizers now, with the same records.

class _Rule:
    """How one optimizer record maps onto a public class (the file format's fixed table)."""

    def __init__(self, cls, hyper, slots, counts_steps=False, options=None):
        self.cls = cls                    # the public class
        self.hyper = hyper                # the record's hyper-parameter names, in file order
        self.slots = slots                # its state slots, in file order
        self.counts_steps = counts_steps  # the record has Adam's step count 'iter'
        self.options = options or {}      # constructor keywords the record implies


_RENAMED = {"epsilon": "eps"}             # record name -> constructor / state_dict name


def optimizer_rules(allow_estimator=False):
    """The fixed table ``(class name, implementation) -> _Rule`` of the optimizers a file holds."""
    from . import optimizers
    from .reference import optimizers as ref
    table = {}
    for impl, mod in (("compiled", optimizers), ("reference", ref)):
        table[("SGD", impl)] = _Rule(mod.SGD, ("lr",), ())
        table[("Momentum", impl)] = _Rule(mod.Momentum, ("lr", "momentum"), ("v",))
        table[("Nesterov", impl)] = _Rule(mod.Nesterov, ("lr", "momentum"), ("v",))
        table[("AdaGrad", impl)] = _Rule(mod.AdaGrad, ("lr",), ("h",))
        table[("RMSprop", impl)] = _Rule(mod.RMSprop, ("lr", "decay_rate"), ("h",))
        table[("Adam", impl)] = _Rule(mod.Adam, ("lr", "beta1", "beta2"), ("m", "v"), True)
    if allow_estimator:
        table[("Adam", "estimator")] = _Rule(optimizers.Adam, ("lr", "beta1", "beta2", "epsilon"),
                                             ("m", "v"), True)
        table[("SGDNesterov", "estimator")] = _Rule(optimizers.Nesterov, ("lr", "momentum"),
                                                    ("v",), options={"variant": "sklearn"})
    return table


def _default(cls, name):
    return inspect.signature(cls).parameters[name].default


def _record_key(key, d, allow_estimator):
    """The record key for an optimizer of public class ``key`` whose state dict is ``d``."""
    name, impl = key
    where = "an estimator's file" if allow_estimator else "a network file"
    if name == "Nesterov" and d.get("variant", "book") != "book":
        if not (allow_estimator and impl == "compiled" and d["variant"] == "sklearn"):
            raise TypeError(f"{where} holds Nesterov(variant='book') only, got "
                            f"variant={d['variant']!r}")
        return ("SGDNesterov", "estimator")
    if name == "Adam" and allow_estimator and impl == "compiled":
        return ("Adam", "estimator")      # sklearn's epsilon is stored
    if name == "Adam" and "eps" in d["hyper"]:
        book = _default(optimizer_rules()[key].cls, "eps")
        if d["hyper"]["eps"] != book:
            raise TypeError(f"{where} holds Adam with the book's eps={book!r} only, got "
                            f"eps={d['hyper']['eps']!r}")
    return key


def optimizer_record(opt, prefix, arrays, allow_estimator=False):
    """(record, arrays filled) for one of fastmlp's optimizers and its state."""
    key = _key_of(opt, {k: r.cls for k, r in optimizer_rules().items()})
    if key is None:
        raise TypeError(f"optimizer must be one of fastmlp's optimizers (fastmlp.optimizers or "
                        f"fastmlp.reference.optimizers), got {type(opt).__name__}")
    d = opt.state_dict()
    key = _record_key(key, d, allow_estimator)
    rule = optimizer_rules(allow_estimator)[key]
    hyper = {h: jfloat(d["hyper"][_RENAMED.get(h, h)]) for h in rule.hyper}
    state = {}
    for s in rule.slots:
        if s in d["state"]:
            state[s] = list(d["state"][s])
            for k, a in d["state"][s].items():
                arrays[f"{prefix}/{s}/{k}"] = a
    rec = {"class": key[0], "implementation": key[1], "hyper": hyper, "state": state}
    if rule.counts_steps:
        rec["iter"] = int(d["iter"])
    return rec


def optimizer_plan(rec, prefix, params=None, allow_estimator=False):
    """Check an optimizer record; allocate nothing but the (stateless) optimizer object.

    Returns ``(optimizer, rule, state, expected)``: a fresh optimizer with the file's
    hyper-parameters (validated by its own constructor), the record's rule,
    ``{state name: parameter names}``, and the arrays that state needs
    (``{name: (dtype, shape)}``, matched to ``params`` when it is given).
    """
    record(rec, ("class", "implementation", "hyper", "state"), "the optimizer record",
           optional=("iter",))
    key = (rec["class"], rec["implementation"])
    if not all(isinstance(k, str) for k in key):
        raise ValueError("the optimizer's class and implementation must be strings")
    rule = _lookup(optimizer_rules(allow_estimator), key, "optimizer class")
    hyper = record(rec["hyper"], rule.hyper, f"the {key[0]} hyper-parameters")
    values = {k: number(hyper[k], f"optimizer {k}") for k in rule.hyper}
    if "epsilon" in values:
        number(values["epsilon"], "optimizer epsilon", 0.0, allow_minimum=False)
    kwargs = {_RENAMED.get(k, k): v for k, v in values.items()}
    opt = construct(rule.cls, f"{key[0]} hyper-parameter", **kwargs, **rule.options)
    if rule.counts_steps != ("iter" in rec):
        raise ValueError(f"the {key[0]} record {'lacks' if rule.counts_steps else 'has'} a "
                         f"step count 'iter'")
    if "iter" in rec:
        count(rec["iter"], "optimizer iter")
    names = list(rule.slots)
    state = rec["state"]
    if not isinstance(state, dict) or (state and set(state) != set(names)):
        raise ValueError(f"the {key[0]} state must hold all of {names} or nothing, got "
                         f"{sorted(state) if isinstance(state, dict) else state!r:.100}")
    expected = {}
    for s, keys in state.items():
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"optimizer state {s} must list parameter names")
        if params is not None and keys != list(params):
            raise ValueError(f"optimizer state {s} is for parameters {keys!r:.200}, the network "
                             f"has {list(params)!r:.200}")
        for k in keys:
            expected[f"{prefix}/{s}/{k}"] = params[k] if params is not None else (None, None)
    return opt, rule, state, expected


def optimizer_from_record(rec, arrays, prefix, allow_estimator=False, params=None):
    """The optimizer a record describes, its state copied from ``arrays[prefix/...]``.

    ``params`` (``{name: (dtype, shape)}`` of the network's parameters) makes the state
    arrays be checked against the network too.
    """
    opt, rule, state, expected = optimizer_plan(rec, prefix, params, allow_estimator)
    check_arrays(expected, arrays)
    for s, keys in state.items():
        if any(arrays[f"{prefix}/{s}/{k}"].dtype.kind != "f" for k in keys):
            raise ValueError(f"optimizer state {s} must hold float arrays")
    d = opt.state_dict()
    d["state"] = {s: {k: arrays[f"{prefix}/{s}/{k}"] for k in state[s]}
                  for s in rule.slots if s in state}
    if rule.counts_steps:
        d["iter"] = rec["iter"]
    construct(opt.load_state_dict, f"{rec['class']} state", d)
    return opt
