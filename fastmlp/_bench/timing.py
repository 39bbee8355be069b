"""How ``fastmlp bench`` times things: calls per second, medians, interleaved repeats.

``Rate`` measures one callable in slices; ``interleave`` runs a set of them per
repeat, in an order that rotates between repeats (so a drift of the machine hits
every peer alike), the tasks on one thread pool (one peer's activations) in turns
slice by slice (the machine's speed moves by up to ±40% within a second here, and
their ratios should not), and, with ``--wait-idle``, redoes a repeat that other
processes disturbed.
"""
import gc
from time import perf_counter, sleep

import numpy as np

from .machine import CpuShare, available_cores

BUSY_LIMIT = 0.05   # with --wait-idle, a repeat during which others took more CPU is redone
SLICE_SECONDS = 0.1  # a repeat's timed run of each task is cut into slices of about this
# idle before each group: a thread pool's workers spin for a while after its last product
# (OpenBLAS's up to about 0.1 s here) and would slow the next group's pool
SETTLE_SECONDS = 0.25


class Rate:
    """``factor`` times the calls per second of ``call(i)`` (i = 0, 1, ... across the
    whole run), timed in slices: ``start`` warms up and resets the count, each ``run``
    adds a slice of at least ``min_calls`` calls, ``value`` is the rate over the slices."""

    def __init__(self, call, factor=1.0, warmup=3):
        self.call, self.factor, self.warmup = call, factor, warmup
        self.i, self.calls, self.elapsed = 0, 0, 0.0

    def start(self):
        for _ in range(self.warmup):
            self.call(self.i)
            self.i += 1
        self.calls, self.elapsed = 0, 0.0

    def run(self, seconds, min_calls=1):
        n, t0 = 0, perf_counter()
        while True:
            self.call(self.i)
            self.i += 1
            n += 1
            elapsed = perf_counter() - t0
            if elapsed >= seconds and n >= min_calls:
                break
        self.calls += n
        self.elapsed += elapsed

    def value(self):
        return self.factor * self.calls / self.elapsed


def timed(call, seconds, min_calls=5, warmup=3):
    """Calls per second of ``call(i)`` (i = 0, 1, ...), timed for about ``seconds`` in one go."""
    rate = Rate(call, warmup=warmup)
    rate.start()
    gc.collect()
    rate.run(seconds, min_calls)
    return rate.value()


def median(values):
    """The median of ``values`` as a float (nan when empty)."""
    return float(np.median(values)) if values else float("nan")


def alternation(step, mm, seconds):
    """time(step + product) / (time(step) + time(product)), each timed alone here."""
    t_step = 1 / timed(step, seconds)
    t_mm = 1 / timed(mm, seconds)
    t_pair = 1 / timed(lambda i: (step(i), mm(i)), seconds)
    return t_pair / (t_step + t_mm)


def _rotate(seq, k):
    k %= max(1, len(seq))
    return seq[k:] + seq[:k]


def slice_count(seconds):
    """How many slices a timed run of ``seconds`` is cut into (about SLICE_SECONDS each)."""
    return max(1, round(seconds / SLICE_SECONDS))


def _run_repeat(tasks, seconds, r, group):
    """One repeat: the ``Rate`` tasks group by group, the groups in an order rotating between
    repeats; within a group each task runs about ``seconds`` in slices taken in turns (the
    order rotating from slice to slice); then each other task (a callable) once. Returns
    their values."""
    rates = [name for name in tasks if isinstance(tasks[name], Rate)]
    got = {}
    for label in _rotate(list(dict.fromkeys(group(name) for name in rates)), r):
        members = [name for name in rates if group(name) == label]
        sleep(SETTLE_SECONDS)
        for name in members:
            tasks[name].start()
        gc.collect()
        slices = slice_count(seconds)
        for s in range(slices):
            for name in _rotate(members, r + s):
                tasks[name].run(seconds / slices)
        got.update((name, tasks[name].value()) for name in members)
    got.update((name, tasks[name]()) for name in _rotate(list(tasks), r) if name not in got)
    return got


def interleave(tasks, repeats, seconds, log, idle=None, group=None, retries=3):
    """Run every task once per repeat: the ``Rate`` tasks for about ``seconds`` each, the
    other tasks (callables returning one measurement, such as ``alternation``) after them.

    ``group(name)`` labels the ``Rate`` tasks (default: each its own). The tasks of a group
    (one peer at several activations: one thread pool) take turns by slices of about
    ``SLICE_SECONDS``, so their ratios see the same machine; the groups run one after the
    other, in an order that rotates between repeats, each after ``SETTLE_SECONDS`` idle,
    since a pool's idle threads spin for a while after its last product and would slow
    another pool's work.

    ``tasks`` maps names to ``Rate`` objects or callables. Returns
    ``({name: [value per repeat]}, [others' CPU share per repeat], discarded)``.
    With ``idle`` (see --wait-idle) each repeat first waits for a quiet machine,
    and a repeat during which other processes took >= BUSY_LIMIT of the CPU is
    thrown away and redone (at most ``retries * repeats`` times per call).
    """
    runs, busy, discarded, r = {name: [] for name in tasks}, [], 0, 0
    while len(busy) < repeats:
        if idle:
            idle()
        probe = CpuShare()
        got = _run_repeat(tasks, seconds, r, group or (lambda name: name))
        r += 1
        share = probe.others(available_cores())
        if idle and share is not None and share >= BUSY_LIMIT and discarded < retries * repeats:
            discarded += 1
            log("x")
            continue
        for name, value in got.items():
            runs[name].append(value)
        busy.append(share)
        log(".")
    return runs, busy, discarded
