"""Compiled optimizers (fastmlp.optimizers) against the numpy oracle (fastmlp.reference.optimizers).

Tolerances follow ../shared/TESTING.md: one optimizer step is elementwise
(a handful of roundings per element), so compiled and reference agree to
``4u`` relative to the magnitudes involved; over several steps the
per-step bounds add up. Thread counts give bitwise-equal results.
"""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastmlp
from fastmlp import _backend
from fastmlp import optimizers as compiled
from fastmlp import threads as _threads
from fastmlp.reference import optimizers as reference

BOOK_NAMES = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]
# every compiled rule: the book's six and scikit-learn's Nesterov (Nesterov(variant='sklearn'))
NAMES = BOOK_NAMES + ["NesterovSklearn"]
CLASS = {"NesterovSklearn": "Nesterov"}
DTYPES = [np.float32, np.float64]
SIZES = [1, 3, 17, 1023]
STATE = {"SGD": (), "Momentum": ("v",), "Nesterov": ("v",), "AdaGrad": ("h",),
         "RMSprop": ("h",), "Adam": ("m", "v"), "NesterovSklearn": ("v",)}
# hyper-parameters large enough that every step moves the parameters visibly
KWARGS = {"SGD": {"lr": 0.1}, "Momentum": {"lr": 0.1, "momentum": 0.8},
          "Nesterov": {"lr": 0.1, "momentum": 0.7}, "AdaGrad": {"lr": 0.1},
          "RMSprop": {"lr": 0.05, "decay_rate": 0.9}, "Adam": {"lr": 0.01, "beta1": 0.8, "beta2": 0.99},
          "NesterovSklearn": {"lr": 0.1, "momentum": 0.7, "variant": "sklearn"}}


def make(module, name):
    """The optimizer ``name`` (a key of KWARGS) of ``module`` with its KWARGS."""
    return getattr(module, CLASS.get(name, name))(**KWARGS[name])


def unit_roundoff(dtype):
    return np.finfo(dtype).eps / 2


def make_params(size, dtype, seed=0):
    rng = np.random.default_rng(seed)
    shape = (33, 31) if size == 1023 else (size,)
    return {"W": rng.standard_normal(shape).astype(dtype),
            "b": rng.standard_normal(3).astype(dtype)}


def make_grads(params, n_steps, seed=1):
    """A fixed gradient sequence: varying scale, some exact zeros, both signs."""
    rng = np.random.default_rng(seed)
    seq = []
    for step in range(n_steps):
        grads = {}
        for key, p in params.items():
            g = rng.standard_normal(p.shape) * 10.0 ** rng.uniform(-2, 1)
            g[rng.random(p.shape) < 0.1] = 0.0
            grads[key] = g.astype(p.dtype)
        seq.append(grads)
    return seq


def copy_params(params):
    return {k: v.copy() for k, v in params.items()}


def state_of(opt, name):
    """Copies of the optimizer's state arrays (and Adam's step count)."""
    out = {s: {k: a.copy() for k, a in getattr(opt, s).items()}
           for s in STATE[name] if getattr(opt, s) is not None}
    if name == "Adam":
        out["iter"] = opt.iter
    return out


def assert_bitwise(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(np.ascontiguousarray(a).view(np.uint8),
                                  np.ascontiguousarray(b).view(np.uint8))


def assert_state_bitwise(before, after):
    assert before.keys() == after.keys()
    for s in before:
        if s == "iter":
            assert before[s] == after[s]
            continue
        for k in before[s]:
            assert_bitwise(before[s][k], after[s][k])


def within(got, ref, bound):
    """Elementwise |got - ref| <= bound, with a readable failure."""
    err = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    bad = err > bound
    assert not bad.any(), (f"{bad.sum()} of {bad.size} elements off: worst error "
                           f"{err[bad].max():.3g} against bound {bound[bad][np.argmax(err[bad])]:.3g}")


# ---------------------------------------------------------------- the oracle itself


def scalar_rule(name, kwargs, p, gs):
    """The book's formulas in Python floats for one scalar parameter over gradients ``gs``."""
    lr = kwargs["lr"]
    v = h = m = 0.0
    for it, g in enumerate(gs, start=1):
        if name == "SGD":
            p = p - lr * g
        elif name == "Momentum":
            v = kwargs["momentum"] * v - lr * g
            p = p + v
        elif name == "Nesterov":   # the book as corrected on 2021-01-18: p, then v
            mom = kwargs["momentum"]
            p = p + mom * mom * v
            p = p - (1 + mom) * lr * g
            v = v * mom - lr * g
        elif name == "NesterovSklearn":   # sklearn's _SGDOptimizer(nesterov=True)
            mom = kwargs["momentum"]
            v = mom * v - lr * g
            p = p + (mom * v - lr * g)
        elif name == "AdaGrad":
            h = h + g * g
            p = p - lr * g / (h ** 0.5 + 1e-7)
        elif name == "RMSprop":
            d = kwargs["decay_rate"]
            h = h * d + (1 - d) * g * g
            p = p - lr * g / (h ** 0.5 + 1e-7)
        elif name == "Adam":
            b1, b2 = kwargs["beta1"], kwargs["beta2"]
            lr_t = lr * (1.0 - b2 ** it) ** 0.5 / (1.0 - b1 ** it)
            m = m + (1 - b1) * (g - m)
            v = v + (1 - b2) * (g * g - v)
            p = p - lr_t * m / (v ** 0.5 + 1e-7)
    return p


@pytest.mark.parametrize("name", NAMES)
def test_reference_follows_book_formulas(name):
    """Reference and compiled (float64) both follow the formulas written out on scalars."""
    gs = [0.5, -2.0, 0.0, 3.25, 1e-3]
    p0 = np.array([1.5, -0.25, 0.0])
    expected = np.array([scalar_rule(name, KWARGS[name], float(p), [g * (i + 1) for g in gs])
                         for i, p in enumerate(p0)])
    for module in (reference, compiled):
        params = {"p": p0.copy()}
        opt = make(module, name)
        for g in gs:
            opt.update(params, {"p": np.array([g, 2 * g, 3 * g])})
        np.testing.assert_allclose(params["p"], expected, rtol=1e-14, atol=1e-15,
                                   err_msg=module.__name__)


def test_reference_names_and_factory():
    assert reference.__all__ == compiled.__all__
    for name in BOOK_NAMES:
        assert type(reference.get_optimizer(name.upper())) is getattr(reference, name)
    with pytest.raises(ValueError, match="optimizer"):
        reference.get_optimizer("lbfgs")


# ---------------------------------------------------------------- compiled vs reference


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_one_step_matches_reference(name, dtype, size):
    u = unit_roundoff(dtype)
    params0 = make_params(size, dtype)
    for grads in make_grads(params0, 3):  # first step, and a later one with non-zero state
        p_ref, p_got = copy_params(params0), copy_params(params0)
        ref = make(reference, name)
        got = make(compiled, name)
        warm = make_grads(params0, 2, seed=7)
        for g in warm:
            ref.update(p_ref, g)
            got.update(p_got, g)
        # bring both to the same starting point, then compare exactly one step
        for s in STATE[name]:
            for k in p_ref:
                getattr(got, s)[k][...] = getattr(ref, s)[k]
        for k in p_ref:
            p_got[k][...] = p_ref[k]
        old = copy_params(p_ref)
        old_state = state_of(ref, name)
        ids = {k: id(v) for k, v in p_got.items()}
        ref.update(p_ref, grads)
        got.update(p_got, grads)
        assert {k: id(v) for k, v in p_got.items()} == ids  # updated in place
        for k in p_ref:
            assert p_got[k].dtype == dtype
            bound = 4 * u * (np.abs(old[k]) + np.abs(p_ref[k] - old[k]).astype(np.float64))
            within(p_got[k], p_ref[k], bound)
            for s in STATE[name]:
                new_ref, prev = getattr(ref, s)[k], old_state[s][k]
                bound = 4 * u * (np.abs(prev) + np.abs(new_ref - prev).astype(np.float64))
                within(getattr(got, s)[k], new_ref, bound)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_steps_are_bitwise_the_reference_operations(name, dtype):
    """The compiled rules do numpy's operations one rounding at a time: with no fused
    multiply-add (-ffp-contract=off) every SIMD clone gives the reference's bits."""
    params0 = make_params(1023, dtype)
    p_ref, p_got = copy_params(params0), copy_params(params0)
    ref, got = make(reference, name), make(compiled, name)
    for g in make_grads(params0, 4, seed=3):
        ref.update(p_ref, g)
        got.update(p_got, g)
    for k in p_ref:
        assert_bitwise(p_got[k], p_ref[k])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_trajectory_matches_reference(name, dtype):
    """30 steps: the compiled trajectory stays within the summed per-step bounds of the book's."""
    u = unit_roundoff(dtype)
    n_steps = 30
    p_ref, p_got = make_params(1023, dtype, seed=3), make_params(1023, dtype, seed=3)
    ref = make(reference, name)
    got = make(compiled, name)
    budget = {k: np.zeros(p.shape) for k, p in p_ref.items()}
    for grads in make_grads(p_ref, n_steps, seed=4):
        old = copy_params(p_ref)
        ref.update(p_ref, grads)
        got.update(p_got, grads)
        for k in p_ref:
            budget[k] += 8 * u * (np.abs(old[k]) + np.abs(p_ref[k] - old[k]))
            within(p_got[k], p_ref[k], budget[k])
    moved = np.abs(p_ref["W"] - make_params(1023, dtype, seed=3)["W"])
    assert np.mean(moved > 0) > 0.5  # the comparison is not vacuous


@pytest.mark.parametrize("name", NAMES)
def test_adam_and_friends_keep_state_dtype(name):
    params = make_params(17, np.float32)
    opt = make(compiled, name)
    opt.update(params, make_grads(params, 1)[0])
    for s in STATE[name]:
        for k, p in params.items():
            state = getattr(opt, s)[k]
            assert state.dtype == np.float32 and state.shape == p.shape and state.flags.c_contiguous


# ---------------------------------------------------------------- layouts


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_non_contiguous_param_views_updated_in_place(name, dtype):
    rng = np.random.default_rng(5)
    base_w = rng.standard_normal((12, 10)).astype(dtype)
    base_b = rng.standard_normal(9).astype(dtype)
    base_f = np.asfortranarray(rng.standard_normal((4, 6)).astype(dtype))
    base_t = rng.standard_normal((5, 7)).astype(dtype)
    untouched_w = base_w.copy()
    views = {"W": base_w[1::2, ::3], "b": base_b[::4], "F": base_f, "T": base_t.T}
    assert not any(v.flags.c_contiguous for v in views.values())
    ref_params = {k: v.copy() for k, v in views.items()}  # C-contiguous copies for the oracle
    ref = make(reference, name)
    got = make(compiled, name)
    for grads in make_grads(ref_params, 4, seed=6):
        ref.update(ref_params, grads)
        got.update(views, grads)
    u = unit_roundoff(dtype)
    for k in views:
        np.testing.assert_allclose(views[k], ref_params[k], rtol=64 * u, atol=64 * u)
    # the views alias the bases: the update landed there, and nothing else moved
    np.testing.assert_array_equal(base_w[1::2, ::3], views["W"])
    mask = np.ones(base_w.shape, bool)
    mask[1::2, ::3] = False
    assert_bitwise(base_w[mask], untouched_w[mask])
    assert np.shares_memory(views["T"], base_t)


@pytest.mark.parametrize("name", NAMES)
def test_grad_layouts_give_bitwise_equal_results(name):
    """Read-only, Fortran, strided, big-endian and float64-for-float32 grads: same bits as C grads."""
    params0 = {"W": np.random.default_rng(8).standard_normal((6, 5)).astype(np.float32)}
    grads_c = make_grads(params0, 2, seed=9)

    def run(transform):
        params = copy_params(params0)
        opt = make(compiled, name)
        for g in grads_c:
            given = {k: transform(v) for k, v in g.items()}
            before = {k: v.copy() for k, v in given.items()}
            flags = {k: v.flags.writeable for k, v in given.items()}
            opt.update(params, given)
            for k in given:  # grads are never written to
                assert_bitwise(given[k], before[k])
                assert given[k].flags.writeable == flags[k]
        return params["W"]

    def readonly(a):
        a = a.copy()
        a.flags.writeable = False
        return a

    def strided(a):
        big = np.zeros((a.shape[0] * 2, a.shape[1] * 3), a.dtype)
        big[::2, ::3] = a
        return big[::2, ::3]

    expected = run(lambda a: a)
    for transform in (readonly, np.asfortranarray, strided,
                      lambda a: a.astype(a.dtype.newbyteorder(">"))):
        assert_bitwise(run(transform), expected)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_dict_fast_path_equals_checked_path(name, dtype):
    """Plain dicts of ready arrays take the path checked in C; any other mapping, or an
    unaligned grad, takes the Python-checked path: the bits are the same."""
    from collections import OrderedDict

    def unaligned(a):
        raw = np.empty(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
        raw[...] = a
        return raw

    params0 = make_params(17, dtype)
    steps = make_grads(params0, 3, seed=5)
    results = []
    for wrap, grad_layout, fast in ((dict, lambda a: a, True), (OrderedDict, lambda a: a, False),
                                    (dict, unaligned, False)):
        params = wrap(copy_params(params0))
        opt = make(compiled, name)
        for i, g in enumerate(steps):
            grads = wrap({k: grad_layout(v) for k, v in g.items()})
            if i > 0 and wrap is dict:   # state exists now: the C check decides the path
                states = [getattr(opt, s) for s in opt.state_names]
                gathered = _backend.optimizer_gather(params, grads, states)
                assert (gathered is not None) == fast
            opt.update(params, grads)
        results.append(params)
    for other in results[1:]:
        for k in params0:
            assert_bitwise(other[k], results[0][k])


# ---------------------------------------------------------------- bad input


def _primed(name):
    """An optimizer after one valid step, so it has state to protect."""
    params = make_params(17, np.float64)
    opt = make(compiled, name)
    opt.update(params, make_grads(params, 1)[0])
    return opt, params


def _bad_calls(params):
    good = make_grads(params, 1, seed=11)[0]
    readonly_params = copy_params(params)
    readonly_params["b"].flags.writeable = False
    return [
        ("missing key", params, {"W": good["W"]}, ValueError, r"grads.*'b'"),
        ("wrong shape", params, {"W": good["W"], "b": good["b"][:2]}, ValueError, r"grads\['b'\]"),
        ("wrong shape 2-D", params, {"W": good["W"][None], "b": good["b"]}, ValueError,
         r"grads\['W'\]"),
        ("complex grads", params, {"W": good["W"], "b": good["b"] + 1j}, TypeError, r"grads\['b'\]"),
        ("object grads", params, {"W": good["W"], "b": good["b"].astype(object)}, TypeError,
         r"grads\['b'\]"),
        ("grads not a dict", params, [good["W"], good["b"]], TypeError, "grads"),
        ("params not a dict", list(params.values()), good, TypeError, "params"),
        ("read-only params", readonly_params, good, ValueError, r"params\['b'\].*read-only"),
        ("int params", {"W": params["W"], "b": np.arange(3)}, good, TypeError, r"params\['b'\]"),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_bad_update_raises_and_changes_nothing(name):
    opt, params = _primed(name)
    for label, p, g, exc, match in _bad_calls(params):
        p_before = {k: v.copy() for k, v in (p.items() if isinstance(p, dict) else enumerate(p))}
        g_before = ({k: np.array(v, copy=True) for k, v in g.items()} if isinstance(g, dict)
                    else None)
        s_before = state_of(opt, name)
        with pytest.raises(exc, match=match):
            opt.update(p, g)
        for k, v in (p.items() if isinstance(p, dict) else enumerate(p)):
            assert_bitwise(v, p_before[k]), label
        if g_before is not None:
            for k, v in g.items():
                np.testing.assert_array_equal(v, g_before[k])
        assert_state_bitwise(s_before, state_of(opt, name))
        assert_bitwise(params["W"], p_before["W"] if isinstance(p, dict) else params["W"])
    # the next valid call is the one a fresh optimizer in the same state would make
    twin_params = copy_params(params)
    twin = make(compiled, name)
    for s, arrays in state_of(opt, name).items():
        setattr(twin, s, arrays) if s != "iter" else setattr(twin, "iter", arrays)
    g = make_grads(params, 1, seed=12)[0]
    opt.update(params, g)
    twin.update(twin_params, g)
    for k in params:
        assert_bitwise(params[k], twin_params[k])


@pytest.mark.parametrize("name", [n for n in NAMES if STATE[n]])
def test_changed_params_after_first_update_rejected(name):
    opt, params = _primed(name)
    s_before = state_of(opt, name)
    extra = dict(params, c=np.zeros(2))
    with pytest.raises(ValueError, match="params changed"):
        opt.update(extra, dict(make_grads(params, 1)[0], c=np.zeros(2)))
    assert_state_bitwise(s_before, state_of(opt, name))


@pytest.mark.parametrize("module", [compiled, reference], ids=["compiled", "reference"])
@pytest.mark.parametrize("name", BOOK_NAMES)   # NesterovSklearn: the same class
@pytest.mark.parametrize("lr, exc", [(0, ValueError), (-0.1, ValueError), (float("nan"), ValueError),
                                     (float("inf"), ValueError), ("0.1", TypeError),
                                     (True, TypeError), (None, TypeError)])
def test_bad_lr(module, name, lr, exc):
    with pytest.raises(exc, match="lr"):
        getattr(module, CLASS.get(name, name))(lr=lr)


@pytest.mark.parametrize("module", [compiled, reference], ids=["compiled", "reference"])
@pytest.mark.parametrize("name, kwargs, match", [
    ("Momentum", {"momentum": -0.5}, "momentum"), ("Nesterov", {"momentum": float("nan")}, "momentum"),
    ("RMSprop", {"decay_rate": 1.0}, "decay_rate"), ("RMSprop", {"decay_rate": -0.1}, "decay_rate"),
    ("Adam", {"beta1": 1.0}, "beta1"), ("Adam", {"beta2": 1.5}, "beta2"),
])
def test_bad_hyper_parameters(module, name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        getattr(module, name)(**kwargs)


def test_get_optimizer():
    assert isinstance(compiled.get_optimizer("adam", lr=0.002), compiled.Adam)
    assert compiled.get_optimizer("RMSProp").lr == 0.01
    with pytest.raises(ValueError, match="optimizer must be one of"):
        compiled.get_optimizer("adamw")


# ---------------------------------------------------------------- threads


@pytest.fixture
def parallel_kernels(monkeypatch):
    """Let every elementwise kernel take its OpenMP path; restore thread settings after."""
    monkeypatch.setattr(_threads, "PARALLEL_MIN_ELEMENTS", 0)
    requested = _threads._requested
    with threadpool_limits(limits=None):  # snapshot of the BLAS pool, restored on exit
        yield
        fastmlp.set_num_threads(None)
    _threads._requested = requested


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_thread_count_does_not_change_bits(name, dtype, parallel_kernels):
    size = 3 * 16384 + 5  # several kernel chunks (CHUNK = 16384), the last one partial
    rng = np.random.default_rng(13)
    params0 = {"W": rng.standard_normal(size).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
    grads = make_grads(params0, 3, seed=14)
    results = []
    for n in (1, 2):
        fastmlp.set_num_threads(n)
        params = copy_params(params0)
        opt = make(compiled, name)
        for g in grads:
            opt.update(params, g)
        results.append((params, state_of(opt, name)))
    for k in params0:
        assert_bitwise(results[0][0][k], results[1][0][k])
    assert_state_bitwise(results[0][1], results[1][1])
    # and the parallel result is still the book's
    ref_params = copy_params(params0)
    ref = make(reference, name)
    for g in grads:
        ref.update(ref_params, g)
    u = unit_roundoff(dtype)
    np.testing.assert_allclose(results[1][0]["W"], ref_params["W"], rtol=64 * u, atol=64 * u)
