"""fastmlp._streams: the dropout mask keys and rewinding a refused pass's draws."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmlp import _streams

BIT_GENERATORS = [np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64,
                  np.random.MT19937]


@pytest.mark.parametrize("bit_generator", BIT_GENERATORS, ids=lambda b: b.__name__)
@given(seed=st.integers(0, 2 ** 64 - 1))
def test_a_key_is_integers_below_the_bound_whatever_the_bit_generator(bit_generator, seed):
    # draw_key's shortcut (the raw output's top bits) must give numpy's integers() exactly
    ours = np.random.Generator(bit_generator(seed))
    numpys = np.random.Generator(bit_generator(seed))
    for _ in range(50):
        assert _streams.draw_key(ours) == int(numpys.integers(0, _streams.KEY_BOUND,
                                                              dtype=np.int64))
    assert ours.random(3).tolist() == numpys.random(3).tolist()   # both streams at one place


def test_keys_from_the_global_state_and_a_random_state_follow_their_seed():
    np.random.seed(3)
    a = [_streams.draw_key(None) for _ in range(5)]
    np.random.seed(3)
    assert a == [_streams.draw_key(None) for _ in range(5)]
    r1, r2 = np.random.RandomState(4), np.random.RandomState(4)
    assert [_streams.draw_key(r1) for _ in range(5)] == [
        int(r2.randint(0, _streams.KEY_BOUND, dtype=np.int64)) for _ in range(5)]


def test_a_shared_stream_is_saved_once_and_rewound_to_before_all_draws():
    shared, other = np.random.default_rng(1), np.random.default_rng(2)
    streams = [shared, None, shared, other]
    saved = _streams.saved_states(streams)
    assert [s for s, _ in saved] == [shared, other]
    first = [_streams.draw_key(s) for s in streams if s is not None]
    _streams.rewind(saved)
    assert [_streams.draw_key(s) for s in streams if s is not None] == first
