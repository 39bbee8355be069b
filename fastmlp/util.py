"""The book's helpers from ``common/util.py`` that its MLP scripts use.

``smooth_curve`` (for plotting loss curves) and ``shuffle_dataset`` (in
``ch06/hyperparameter_optimization.py``). The convolution helpers of that
file (``im2col``, ``col2im``, ``conv_output_size``) serve the book's CNN
chapters, not its MLP scripts, and are not here. Plain numpy: neither is a
hot loop.
"""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._random import check_seed, generator
from ._typing import Seed
from ._validation import as_array, as_float

__all__ = ["smooth_curve", "shuffle_dataset"]

#: Width of ``smooth_curve``'s window and the Kaiser window's beta (the book's values).
SMOOTH_WINDOW = 11
SMOOTH_BETA = 2.0


def smooth_curve(x: ArrayLike) -> np.ndarray:
    """A loss curve smoothed for plotting: a centred weighted moving average.

    Each output value is the average of the 11 values centred on it, weighted by a
    Kaiser window (beta 2) normalised to sum 1. Near the ends the curve is extended
    by mirroring: at the start without repeating the first value
    (``x[5], ..., x[1]``), at the end repeating the last (``x[-1], ..., x[-5]``), as
    the book does; so the output has ``len(x)`` values and a constant curve stays
    constant.

    Parameters
    ----------
    x : array_like, shape (n,), n >= 11
        The curve (e.g. ``Trainer.train_loss_list``).

    Returns
    -------
    ndarray, shape (n,), float64 (float32 for float32 input)

    Raises
    ------
    ValueError
        For a curve that is not 1-D or has fewer than 11 values (the book's code
        returns a shorter, shifted curve for those).
    """
    x = as_float(x, "x", ndim=1)
    if x.shape[0] < SMOOTH_WINDOW:
        raise ValueError(f"x must hold at least {SMOOTH_WINDOW} values to smooth, "
                         f"got {x.shape[0]}")
    half = SMOOTH_WINDOW - 1
    extended = np.concatenate([x[half:0:-1], x, x[:-half - 1:-1]])
    weights = np.kaiser(SMOOTH_WINDOW, SMOOTH_BETA)
    smoothed = np.convolve(weights / weights.sum(), extended, mode="valid")
    edge = SMOOTH_WINDOW // 2
    return smoothed[edge:smoothed.shape[0] - edge].astype(x.dtype, copy=False)


def shuffle_dataset(x: ArrayLike, t: ArrayLike,
                    seed: Seed = None) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``t`` with their rows in one random order (new arrays; the inputs stay).

    Parameters
    ----------
    x : array_like, shape (N, ...)
        Samples, any number of dimensions >= 1 (the book's 2-d rows or 4-d images).
    t : array_like, shape (N, ...)
        Labels or one-hot rows, one per sample.
    seed : None, int, numpy.random.Generator or RandomState
        None (the book's behaviour): ``np.random.permutation``, numpy's global
        random state, so after ``np.random.seed(s)`` the order is the book's; an
        int: ``numpy.random.default_rng(seed)``; a Generator or RandomState: its
        ``permutation``.

    Returns
    -------
    x, t : ndarray
        Copies of ``x`` and ``t`` indexed by the same permutation.
    """
    x = as_array(x, "x")
    t = as_array(t, "t")
    if x.ndim == 0 or t.ndim == 0:
        raise ValueError(f"x and t must have one row per sample, got shapes {x.shape} and "
                         f"{t.shape}")
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but t has {t.shape[0]}")
    seed = check_seed(seed)
    if seed is None:
        permutation = np.random.permutation(x.shape[0])
    elif isinstance(seed, np.random.RandomState):
        permutation = seed.permutation(x.shape[0])
    else:
        permutation = generator(seed).permutation(x.shape[0])
    return x[permutation], t[permutation]
