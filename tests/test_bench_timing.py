"""``fastmlp bench``'s clock work (fastmlp._bench.timing) on a fake clock: a rate counts the
calls of all its slices, and a repeat's tasks take turns slice by slice in a rotating order."""
import itertools

import pytest

from fastmlp._bench import timing

STEP = 1 / 128
SLEPT = []   # the idle pauses interleave took (see clock)


@pytest.fixture
def clock(monkeypatch):
    """perf_counter advancing STEP (a power of two: exact sums) at each call of a timed task
    (see ``task``)."""
    now = [0.0]
    monkeypatch.setattr(timing, "perf_counter", lambda: now[0])
    monkeypatch.setattr(timing, "sleep", lambda seconds: SLEPT.append(seconds))
    SLEPT.clear()
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


def test_a_groups_tasks_take_turns_by_slice_and_groups_run_in_rotating_blocks(clock):
    log = []
    tasks = {name: timing.Rate(task(clock, name, log), factor=2) for name in ("a1", "a2", "b")}
    tasks["compound"] = lambda: log.append(("C", None)) or 1.5   # runs after the rates
    runs, busy, discarded = timing.interleave(tasks, 2, 0.3, lambda s: None,
                                              group=lambda name: name[0])
    assert timing.slice_count(0.3) == 3
    turns = [name for name, _ in itertools.groupby(n for n, _ in log)]
    # repeat 1: group a (warm-ups a1 a2, slices a1 a2 | a2 a1 | a1 a2), then group b in one
    # block; repeat 2: b first, then a with the slice order rotated one further
    assert turns == ["a1", "a2", "a1", "a2", "a1", "a2", "b", "C",
                     "b", "a1", "a2", "a1", "a2", "a1", "C"]
    # each slice runs until 0.1 s: 13 calls of STEP, the same for every task
    assert all(v == pytest.approx(2 / STEP) for name in ("a1", "a2", "b") for v in runs[name])
    assert sum(1 for n, _ in log if n == "a1") == 2 * (3 + 3 * 13)
    assert runs["compound"] == [1.5, 1.5]
    assert len(busy) == 2 and discarded == 0
    assert SLEPT == [timing.SETTLE_SECONDS] * 4    # before each group's block


def test_without_groups_each_task_runs_in_one_block(clock):
    log = []
    tasks = {name: timing.Rate(task(clock, name, log)) for name in "abc"}
    timing.interleave(tasks, 2, 0.3, lambda s: None)
    turns = [name for name, _ in itertools.groupby(n for n, _ in log)]
    assert turns == ["a", "b", "c", "b", "c", "a"]   # the order rotates between repeats


def test_short_runs_are_one_slice():
    assert timing.slice_count(0.02) == 1
    assert timing.slice_count(0.5) == 5
