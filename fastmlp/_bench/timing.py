"""How ``fastmlp bench`` times things: calls per second, medians, interleaved repeats.

``timed`` measures one callable; ``interleave`` runs a set of them once per
repeat in an order that rotates between repeats (so a drift of the machine
hits every peer alike) and, with ``--wait-idle``, redoes a repeat that other
processes disturbed.
"""
import gc
import time

import numpy as np

from .machine import CpuShare, available_cores

BUSY_LIMIT = 0.05   # with --wait-idle, a repeat during which others took more CPU is redone


def timed(call, seconds, min_calls=5, warmup=3):
    """Calls per second of ``call(i)`` (i = 0, 1, ...), timed for about ``seconds``."""
    for i in range(warmup):
        call(i)
    gc.collect()
    n, t0 = 0, time.perf_counter()
    while True:
        call(n)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= min_calls:
            return n / elapsed


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


def interleave(tasks, repeats, log, idle=None, retries=3):
    """Run every task once per repeat, in an order that rotates between repeats.

    ``tasks`` maps names to callables returning one measurement. Returns
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
        got = {name: tasks[name]() for name in _rotate(list(tasks), r)}
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
