"""Where dropout masks get their randomness (numpy only; shared by the compiled layers and
the reference, so both draw the same masks).

A dropout mask is a pure function of one 63-bit key and the element's flat index
(``kernels/fastmlp_norm.h``); each training-mode forward pass draws one key from its
stream. The stream is a ``numpy.random.Generator`` (an int seeds a new one), a legacy
``RandomState``, or ``None``: numpy's global random state, so ``np.random.seed`` makes a
run repeat, as in the book (the convention of ``fastmlp._random``).
"""
import numbers

import numpy as np

__all__ = ["as_stream", "draw_key", "rewindable", "rewind", "saved_states"]

KEY_BOUND = 2 ** 63   # keys are drawn uniformly from [0, KEY_BOUND)


def as_stream(rng, name="rng"):
    """``rng`` as a Generator (an int or SeedSequence seeds one), or None for numpy's
    global random state; anything else is a TypeError naming ``name``."""
    if rng is None or isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, got bool")
    if isinstance(rng, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(rng, numbers.Integral) and rng < 0:
            raise ValueError(f"{name} must be a non-negative seed, got {rng}")
        return np.random.default_rng(rng)
    raise TypeError(f"{name} must be None, an int or a numpy.random.Generator, "
                    f"got {type(rng).__name__}")


# Bit generators whose ``random_raw()`` is one 64-bit output: ``integers(0, 2**63)`` is then
# that output's top 63 bits (Lemire's method never rejects for a power-of-two range), got
# here without ``integers``' argument handling (tests/test_streams.py checks they agree).
_RAW64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64)


def draw_key(rng):
    """One mask key from ``rng`` (a Generator, a RandomState, or None: numpy's global
    random state): ``integers(0, KEY_BOUND)`` of it."""
    if rng is None:
        return int(np.random.randint(0, KEY_BOUND, dtype=np.int64))
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(0, KEY_BOUND, dtype=np.int64))
    bits = rng.bit_generator
    if type(bits) in _RAW64:
        return int(bits.random_raw()) >> 1
    return int(rng.integers(0, KEY_BOUND, dtype=np.int64))


def rewindable(streams):
    """True when every stream in ``streams`` (None entries: no dropout) is a Generator,
    whose state is cheap to save: a failed pass can then :func:`rewind` its draws instead
    of checking its input before drawing (numpy's global state and a RandomState copy a
    624-word state; for them the caller checks first)."""
    return all(isinstance(s, np.random.Generator) for s in streams if s is not None)


def saved_states(streams):
    """``[(generator, state)]`` of the Generators in ``streams``, each once (the layers of
    a network share its stream), for :func:`rewind`."""
    saved = {}
    for s in streams:
        if isinstance(s, np.random.Generator) and id(s) not in saved:
            saved[id(s)] = (s, s.bit_generator.state)
    return list(saved.values())


def rewind(saved):
    """Put each Generator of :func:`saved_states` back where it was."""
    for stream, state in saved:
        stream.bit_generator.state = state
