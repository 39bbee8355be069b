"""The optimizers' API beyond the book: scikit-learn's Nesterov rule, Adam's eps,
``fused_lr()``, ``state_dict()`` / ``load_state_dict()`` and the pure ``_rule_args()``.

Tolerances follow ../shared/TESTING.md: the compiled rules do numpy's operations
one rounding at a time, so against the same operations in numpy they are bitwise;
against a rule written with other roundings (the old three-pass Nesterov,
scikit-learn's Adam) the trajectories agree to ~1e-15 relative (float64).
"""
import math

import numpy as np
import pytest

from fastmlp import optimizers as compiled
from fastmlp.reference import optimizers as reference

DTYPES = [np.float32, np.float64]
MODULES = [compiled, reference]
IDS = ["compiled", "reference"]


def _problem(dtype, seed=0, steps=6):
    rng = np.random.default_rng(seed)
    shapes = {"W1": (17, 5), "b1": (5,), "W2": (5, 3), "b2": (3,)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    grads = [{k: (rng.standard_normal(s) * 10.0 ** rng.uniform(-2, 1)).astype(dtype)
              for k, s in shapes.items()} for _ in range(steps)]
    return params, grads


def _bitwise(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))


# ---------------------------------------------------------------- scikit-learn's Nesterov


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_sklearn_nesterov_is_sklearns_sgd_optimizer(module, dtype):
    """Bitwise scikit-learn's ``SGDOptimizer(nesterov=True)`` trajectory: the same numpy
    operations in the same order (v = m*v - lr*g; p += m*v - lr*g)."""
    so = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    params, grads = _problem(dtype)
    keys = list(params)
    theirs = [params[k].copy() for k in keys]
    ours = {k: params[k].copy() for k in keys}
    sk = so.SGDOptimizer(theirs, learning_rate_init=0.05, momentum=0.8, nesterov=True)
    opt = module.Nesterov(0.05, 0.8, variant="sklearn")
    for g in grads:
        sk.update_params(theirs, [g[k] for k in keys])
        opt.update(ours, g)
    for k, a in zip(keys, theirs):
        _bitwise(ours[k], a)
        _bitwise(opt.v[k], sk.velocities[keys.index(k)])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sklearn_nesterov_compiled_equals_reference(dtype):
    params, grads = _problem(dtype, seed=3, steps=10)
    ref, got = ({k: a.copy() for k, a in params.items()} for _ in range(2))
    r, c = reference.Nesterov(0.1, 0.9, variant="sklearn"), compiled.Nesterov(0.1, 0.9, variant="sklearn")
    for g in grads:
        r.update(ref, g)
        c.update(got, g)
    for k in params:
        _bitwise(got[k], ref[k])
        _bitwise(c.v[k], r.v[k])


def test_sklearn_nesterov_matches_the_old_three_pass_update():
    """The estimator's former ``_SGDNesterov``: momentum step p += v, then the compiled SGD
    passes p -= (1 - m)*v and p -= lr*g. Same rule, other roundings: 1e-15 relative."""
    params, grads = _problem(np.float64, seed=5, steps=20)
    old = {k: a.copy() for k, a in params.items()}
    new = {k: a.copy() for k, a in params.items()}
    lr, mom = 0.05, 0.7
    v = {k: np.zeros_like(a) for k, a in params.items()}
    opt = compiled.Nesterov(lr, mom, variant="sklearn")
    for g in grads:
        for k in old:
            v[k] = mom * v[k] - lr * g[k]
            old[k] += v[k]
            old[k] -= (1.0 - mom) * v[k]
            old[k] -= lr * g[k]
        opt.update(new, g)
    for k in old:
        np.testing.assert_allclose(new[k], old[k], rtol=1e-14, atol=1e-15 * np.abs(old[k]).max())


def test_nesterov_variant_checked():
    for module in MODULES:
        with pytest.raises(ValueError, match="variant"):
            module.Nesterov(variant="pytorch")
        assert module.Nesterov().variant == "book"
    opt = compiled.Nesterov(0.1, 0.9)
    params = {"W": np.ones(3)}
    opt.update(params, {"W": np.ones(3)})
    before = params["W"].copy(), opt.v["W"].copy()
    opt.variant = "bengio"
    with pytest.raises(ValueError, match="variant"):
        opt.update(params, {"W": np.ones(3)})
    _bitwise(params["W"], before[0])
    _bitwise(opt.v["W"], before[1])


# ---------------------------------------------------------------- Adam's eps


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_adam_default_eps_is_the_books(module):
    params, grads = _problem(np.float64)
    a, b = ({k: x.copy() for k, x in params.items()} for _ in range(2))
    default, explicit = module.Adam(0.01), module.Adam(0.01, eps=1e-7)
    for g in grads:
        default.update(a, g)
        explicit.update(b, g)
    for k in a:
        _bitwise(a[k], b[k])
    with pytest.raises(ValueError, match="eps"):
        module.Adam(eps=0.0)
    with pytest.raises(TypeError):
        module.Adam(0.01, 0.9, 0.999, 1e-8)   # eps is keyword-only


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_eps_compiled_equals_reference(dtype):
    params, grads = _problem(dtype, seed=2)
    ref, got = ({k: a.copy() for k, a in params.items()} for _ in range(2))
    r, c = reference.Adam(0.01, 0.8, 0.99, eps=1e-3), compiled.Adam(0.01, 0.8, 0.99, eps=1e-3)
    for g in grads:
        r.update(ref, g)
        c.update(got, g)
    for k in params:
        _bitwise(got[k], ref[k])


def test_adam_eps_matches_sklearns_adam_optimizer():
    """scikit-learn's AdamOptimizer (m = b1*m + (1-b1)*g, other roundings): ~1e-15 relative."""
    so = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    params, grads = _problem(np.float64, seed=4, steps=15)
    keys = list(params)
    theirs = [params[k].copy() for k in keys]
    ours = {k: params[k].copy() for k in keys}
    sk = so.AdamOptimizer(theirs, learning_rate_init=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    opt = compiled.Adam(0.01, 0.8, 0.99, eps=1e-6)
    for g in grads:
        sk.update_params(theirs, [g[k] for k in keys])
        opt.update(ours, g)
    for k, a in zip(keys, theirs):
        np.testing.assert_allclose(ours[k], a, rtol=2e-15, atol=1e-15 * np.abs(a).max())


def test_adam_eps_checked_at_each_update():
    opt = compiled.Adam(0.01)
    params = {"W": np.ones(3)}
    opt.eps = -1.0
    with pytest.raises(ValueError, match="eps"):
        opt.update(params, {"W": np.ones(3)})
    assert opt.iter == 0 and opt.m is None


# ---------------------------------------------------------------- _rule_args is pure


def test_rule_args_does_not_advance_the_step_count():
    opt = compiled.Adam(0.01)
    first = opt._rule_args()
    assert opt._rule_args() == first and opt.iter == 0
    opt.update({"W": np.ones(2)}, {"W": np.ones(2)})
    assert opt.iter == 1 and opt._rule_args() != first


# ---------------------------------------------------------------- fused_lr


def test_fused_lr_only_for_plain_sgd():
    assert compiled.SGD(0.1).fused_lr() == 0.1
    for opt in (compiled.Momentum(0.1), compiled.Nesterov(0.1, variant="sklearn"),
                compiled.Adam(), compiled.AdaGrad(), compiled.RMSprop(), reference.SGD(0.1)):
        assert opt.fused_lr() is None

    class MySGD(compiled.SGD):
        pass

    assert MySGD(0.1).fused_lr() is None
    opt = compiled.SGD(0.1)
    for bad in (np.float64(0.1), 1, math.inf, math.nan, -0.1, 0.0, "0.1"):
        opt.lr = bad
        assert opt.fused_lr() is None


# ---------------------------------------------------------------- state dicts

ALL = [("SGD", {}), ("Momentum", {"momentum": 0.8}), ("Nesterov", {"variant": "sklearn"}),
       ("AdaGrad", {}), ("RMSprop", {"decay_rate": 0.9}), ("Adam", {"eps": 1e-8})]


@pytest.mark.parametrize("name, kw", ALL, ids=[n for n, _ in ALL])
@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_state_dict_round_trip_resumes_bitwise(module, name, kw):
    params, grads = _problem(np.float32, seed=6)
    a = {k: x.copy() for k, x in params.items()}
    opt = getattr(module, name)(0.05, **kw)
    assert opt.state_dict()["state"] == {}
    for g in grads[:3]:
        opt.update(a, g)
    d = opt.state_dict()
    assert set(d["hyper"]) == {n for n, _ in opt.hyper_bounds}
    assert all(type(v) is float for v in d["hyper"].values())
    assert set(d["state"]) == set(opt.state_names)
    assert ("iter" in d) == (name == "Adam") and ("variant" in d) == (name == "Nesterov")
    b = {k: x.copy() for k, x in a.items()}
    twin = getattr(module, name)(0.9)   # other hyper-parameters, overwritten by the load
    twin.load_state_dict(d)
    for s in opt.state_names:   # copies, not views
        assert not any(np.shares_memory(getattr(twin, s)[k], d["state"][s][k]) for k in a)
    for g in grads[3:]:
        opt.update(a, g)
        twin.update(b, g)
    for k in a:
        _bitwise(a[k], b[k])
    if name == "Adam":
        assert twin.iter == opt.iter == len(grads)


def _bad_dicts(d):
    """(description, broken copy of d, exception) for each way a state dict can be wrong."""
    def edit(fn):
        c = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
        c["state"] = {s: dict(x) for s, x in d["state"].items()}
        fn(c)
        return c
    yield "not a dict", [1], TypeError
    yield "extra key", edit(lambda c: c.update(extra=1)), ValueError
    yield "missing iter", edit(lambda c: c.pop("iter")), ValueError
    yield "missing hyper", edit(lambda c: c["hyper"].pop("beta2")), ValueError
    yield "unknown hyper", edit(lambda c: c["hyper"].update(gamma=0.5)), ValueError
    yield "nan lr", edit(lambda c: c["hyper"].update(lr=math.nan)), ValueError
    yield "beta1 1", edit(lambda c: c["hyper"].update(beta1=1.0)), ValueError
    yield "string eps", edit(lambda c: c["hyper"].update(eps="1e-8")), TypeError
    yield "bool iter", edit(lambda c: c.update(iter=True)), TypeError
    yield "negative iter", edit(lambda c: c.update(iter=-1)), ValueError
    yield "one slot", edit(lambda c: c["state"].pop("v")), ValueError
    yield "slot keys", edit(lambda c: c["state"]["v"].pop("b1")), ValueError
    yield "shape", edit(lambda c: c["state"]["v"].update(b1=np.zeros(4, np.float32))), ValueError
    yield "dtype", edit(lambda c: c["state"]["v"].update(b1=np.zeros(5))), TypeError
    yield "ints", edit(lambda c: c["state"]["v"].update(b1=np.zeros(5, int))), TypeError
    yield "list", edit(lambda c: c["state"]["v"].update(b1=[0.0] * 5)), TypeError


@pytest.mark.parametrize("module", MODULES, ids=IDS)
def test_load_state_dict_checks_everything_first(module):
    params, grads = _problem(np.float32)
    opt = module.Adam(0.01)
    opt.update(params, grads[0])
    good = opt.state_dict()
    target = module.Adam(0.02, eps=1e-5)
    target.update({k: a.copy() for k, a in params.items()}, grads[1])
    before = target.state_dict()
    for what, bad, exc in _bad_dicts(good):
        with pytest.raises(exc):
            target.load_state_dict(bad)
        after = target.state_dict()
        assert after["hyper"] == before["hyper"] and after["iter"] == before["iter"], what
        for s in before["state"]:
            for k in before["state"][s]:
                _bitwise(after["state"][s][k], before["state"][s][k])
    with pytest.raises(ValueError, match="variant"):
        nesterov = module.Nesterov()
        d = nesterov.state_dict()
        d["variant"] = "other"
        nesterov.load_state_dict(d)


def test_loaded_big_endian_state_is_native_and_takes_the_fast_path():
    opt = compiled.Momentum(0.1)
    params = {"W": np.ones((3, 2), np.float64)}
    d = {"hyper": {"lr": 0.1, "momentum": 0.5},
         "state": {"v": {"W": np.asfortranarray(np.full((3, 2), 0.25, ">f8"))}}}
    opt.load_state_dict(d)
    v = opt.v["W"]
    assert v.dtype == np.float64 and v.dtype.isnative and v.flags.c_contiguous
    opt.update(params, {"W": np.ones((3, 2))})
    assert opt.v["W"] is v   # updated in place: the compiled fast path took it as it is
    np.testing.assert_array_equal(v, 0.5 * 0.25 - 0.1)
