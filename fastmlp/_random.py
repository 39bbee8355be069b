"""The seeding convention, one place for every ``seed``/``random_state`` argument (numpy only).

scikit-learn's: ``None`` uses numpy's global random state, so ``np.random.seed(0)``
before a run makes it repeat (as the book's scripts do); an int seeds a stream of
its own (``numpy.random.default_rng``); a ``numpy.random.Generator`` is used as it
is (its state advances); a legacy ``numpy.random.RandomState`` is drawn from.

Where fastmlp needs a ``Generator`` (shuffling, sampling), ``None`` and a
``RandomState`` give one seeded by a single draw from that state
(:func:`generator`). The networks' initial weights with ``None`` or a
``RandomState`` are drawn from that state itself (:func:`normal_source`), as the
book's ``np.random.randn``: after ``np.random.seed(s)`` a network starts from the
book's weights, bit for bit in float64. The scale of those weights
(``weight_init_std``: He, Xavier or a number) is here too (:func:`init_scale`).
"""
import numbers

import numpy as np

from fastmlp._validation import check_positive_float

__all__ = ["check_seed", "check_weight_init_std", "generator", "init_scale", "normal_source"]

_LEGACY_SEED_HIGH = 2**31 - 1   # a Generator's seed drawn from a RandomState: [0, 2**31 - 1)


def check_seed(seed, name="seed", error=TypeError):
    """``seed`` if it is None, an int >= 0 (not a bool), a Generator or a RandomState;
    else ``error`` (TypeError, or ValueError where scikit-learn's convention asks for it)
    naming ``name``. Draws nothing."""
    if seed is None or isinstance(seed, (np.random.Generator, np.random.RandomState)):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)):
        if seed < 0:
            raise ValueError(f"{name} must be >= 0, got {seed}")
        return seed
    raise error(f"{name} must be None, an int, a numpy.random.Generator or RandomState, "
                f"got {type(seed).__name__}")


def generator(seed, name="seed", error=TypeError):
    """A ``numpy.random.Generator`` for ``seed`` (checked by :func:`check_seed`): an int's
    own stream, a Generator itself, or for None (numpy's global state) and a RandomState
    a Generator seeded by one draw from that state."""
    seed = check_seed(seed, name, error)
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(np.random.randint(0, _LEGACY_SEED_HIGH))
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(0, _LEGACY_SEED_HIGH))
    return np.random.default_rng(seed)


def normal_source(seed, name="seed", error=TypeError):
    """What a network draws its initial weights from (``standard_normal(size)``) and the
    book-style Trainer its batches (``choice``). None: numpy's global state (``np.random``,
    the book's ``randn``); a RandomState: itself; an int or a Generator: as :func:`generator`."""
    seed = check_seed(seed, name, error)
    if seed is None:
        return np.random   # the module's functions draw from the global RandomState
    if isinstance(seed, np.random.RandomState):
        return seed
    return generator(seed, name, error)


_HE = ("relu", "he")
_XAVIER = ("sigmoid", "xavier", "tanh")


def init_scale(weight_init_std: str | float, n_in: int) -> float:
    """Standard deviation of the initial weights of a layer with ``n_in`` inputs: He's
    ``sqrt(2 / n_in)`` for 'relu'/'he', Xavier's ``sqrt(1 / n_in)`` for the other names."""
    if isinstance(weight_init_std, str):
        if weight_init_std.lower() in _HE:
            return float(np.sqrt(2.0 / n_in))
        return float(np.sqrt(1.0 / n_in))
    return weight_init_std


def check_weight_init_std(weight_init_std: object) -> str | float:
    """``weight_init_std`` checked: one of the names (lower-cased) or a number >= 0."""
    if isinstance(weight_init_std, str):
        if weight_init_std.lower() not in _HE + _XAVIER:
            raise ValueError(
                "weight_init_std must be 'relu', 'he', 'sigmoid', 'xavier', 'tanh' or a number, "
                f"got {weight_init_std!r}")
        return weight_init_std.lower()
    return check_positive_float(weight_init_std, "weight_init_std", allow_zero=True)
