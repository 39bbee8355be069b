"""``fastmlp bench``'s clock work (fastmlp._bench.timing) on a fake clock: a rate counts the
calls of all its slices, and a repeat's tasks take turns slice by slice in a rotating order."""
import itertools

import pytest

from fastmlp._bench import timing

STEP = 1 / 128


@pytest.fixture
def clock(monkeypatch):
    """perf_counter advancing STEP (a power of two: exact sums) at each call of a timed task
    (see ``task``)."""
    now = [0.0]
    monkeypatch.setattr(timing, "perf_counter", lambda: now[0])
    return now


def task(clock, name, log):
    def call(i):
        log.append((name, i))
        clock[0] += STEP
    return call


def test_rate_counts_the_calls_of_all_its_slices(clock):
    log = []
    rate = timing.Rate(task(clock, "a", log), factor=7)
    rate.start()
    rate.run(5 * STEP)
    rate.run(5 * STEP)
    assert [i for _, i in log] == list(range(3 + 5 + 5))   # warm-up, then i keeps counting
    assert rate.calls == 10
    assert rate.value() == pytest.approx(7 / STEP)


def test_rate_runs_at_least_min_calls(clock):
    rate = timing.Rate(task(clock, "a", []))
    rate.start()
    rate.run(0.0, min_calls=4)
    assert rate.calls == 4


def test_interleave_takes_turns_by_slice_in_a_rotating_order(clock):
    log = []
    once = []
    tasks = {name: timing.Rate(task(clock, name, log), factor=2) for name in "abc"}
    tasks["compound"] = lambda: once.append(len(log)) or 1.5
    runs, busy, discarded = timing.interleave(tasks, 2, lambda s: None, seconds=0.3)
    assert timing.slice_count(0.3) == 3
    turns = [name for name, _ in itertools.groupby(n for n, _ in log)]
    first_repeat = ["a", "b", "c"] + ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    second_repeat = ["a", "b", "c"] + ["b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert turns == first_repeat + second_repeat    # warm-ups, then 3 slices per repeat
    per_slice = 13                                   # calls until 0.1 s: ceil(0.1 / STEP)
    assert all(v == pytest.approx(2 / STEP) for name in "abc" for v in runs[name])
    per_repeat = 3 * (3 + 3 * per_slice)
    assert runs["compound"] == [1.5, 1.5] and once == [per_repeat, 2 * per_repeat]
    assert len(busy) == 2 and discarded == 0


def test_short_runs_are_one_slice():
    assert timing.slice_count(0.02) == 1
    assert timing.slice_count(0.5) == 5
