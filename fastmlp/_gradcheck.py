"""The verdict of ``fastmlp gradcheck``: a TwoLayerNet's backprop against central
differences, element by element, within the bound of its dtype
(``fastmlp.gradient.GRADCHECK_BOUNDS``); PASS, or FAIL naming the parameters.

A float32 network is checked against float64 central differences at its own
weights (a float64 copy of the reference network): float32 differences lose
too many digits to say more than a smoke test. First-layer elements whose
difference step would carry a hidden unit across ReLU's kink are left out
(a difference quotient across it is no derivative), and each row says how many.
"""
import numpy as np

from . import reference
from .gradient import GRADCHECK_BOUNDS, bound_ratio


def report(network, x, t):
    """Print the check of ``network`` (a compiled or reference TwoLayerNet) on ``(x, t)``:
    the bound, one row per parameter, then PASS or FAIL; return the exit status (0 or 1)."""
    dtype = np.dtype(network.dtype).name
    params64 = {name: value.astype(np.float64) for name, value in network.params.items()}
    h = 1e-5 * max(1.0, *(float(np.abs(p).max()) for p in params64.values()))
    if dtype == "float64":
        bound, numeric = "float64", network.numerical_gradient(x, t, h=h)
        atol = f"{GRADCHECK_BOUNDS[bound][0]:g}"
    else:   # float32 central differences lose most digits: take them in float64 (same weights)
        bound = "float32 vs float64"
        twin = reference.TwoLayerNet(network.input_size, network.hidden_size, network.output_size,
                                     dtype=np.float64)
        for name, value in params64.items():
            np.copyto(twin.params[name], value)
        numeric = twin.numerical_gradient(x, t, h=h)
        atol = f"{GRADCHECK_BOUNDS[bound][0]:g}*max|n|"
    checked = _off_relu_kinks(x, params64, h)
    print(f"PASS when every element has |a - n| <= {atol} + {GRADCHECK_BOUNDS[bound][1]:g}*|n| "
          f"(a: backprop in {dtype}; n: central differences in float64)")
    analytic = network.gradient(x, t)
    width = max(len(name) for name in network.params)
    failed = []
    for name in network.params:
        a, n = np.asarray(analytic[name], np.float64), np.asarray(numeric[name], np.float64)
        where = checked.get(name)
        ratio = bound_ratio(a, n, bound, where)
        if not ratio <= 1:
            failed.append(name)
        skipped = 0 if where is None else where.size - np.count_nonzero(where)
        print(f"{name:>{width}}: mean abs diff {np.abs(a - n).mean():.3e}, largest error "
              f"{ratio:.3g} of the bound: {'PASS' if ratio <= 1 else 'FAIL'}"
              + (f" ({skipped} next to a ReLU kink not checked)" if skipped else ""))
    print("FAIL: " + ", ".join(failed) if failed else "PASS")
    return 1 if failed else 0


def _off_relu_kinks(x, params, h):
    """{"W1": mask, "b1": mask} of the TwoLayerNet's first-layer elements whose central
    difference (step ``h``) leaves every hidden unit on its side of the ReLU kink: across
    the kink a difference quotient is no derivative, so the others are not checked."""
    x = np.asarray(x, np.float64)
    margin = np.abs(x @ params["W1"] + params["b1"]) / 2   # (N, hidden), 2: slack for rounding
    return {"W1": np.all(margin[:, None, :] > h * np.abs(x)[:, :, None], axis=0),
            "b1": np.all(margin > h, axis=0)}
