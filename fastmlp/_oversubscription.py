"""Is the machine oversubscribed? The one check behind ``fastmlp train``'s, the estimators'
and ``fastmlp bench``'s warnings.

A thread pool (numpy's OpenBLAS, OpenMP) waits at the end of every call for its slowest
thread; when other processes keep the cores busy, that thread is often descheduled and the
call takes many times longer (~10x for a small fit here, see ``shared/bench/THREADS.md``).
The rule: the 1-minute load average of the *other* processes (capped by the tasks runnable
right now, where the platform says: a load that has just ended, such as the compile of a
fresh install, lingers in the average for a minute) plus the threads about to be used
exceeds the cores available to this process by more than :data:`MARGIN`. The load and
the cores can be passed in, so the rule is testable without a busy machine.
"""
import logging
import os
import sys
import threading
import time
import warnings

from .threads import available_cores

__all__ = ["OversubscriptionWarning", "MARGIN", "other_load", "oversubscribed",
           "warn_if_oversubscribed"]

#: Cores of load tolerated above the available ones. An idle machine's load average is
#: rarely 0 (daemons, a desktop: 0.1-0.3), and fastmlp uses every core by default, so
#: without a margin nearly every run would warn; half a core of steady demand is enough to
#: keep a thread of a pool waiting.
MARGIN = 0.5


class OversubscriptionWarning(RuntimeWarning):
    """Other processes plus fastmlp's threads ask for more cores than this process has."""


_log = logging.getLogger(__name__)
_lock = threading.Lock()
_warned = False
# This process's CPU time and the wall clock when fastmlp was imported: the load average
# counts this process too, and a warning about *other* processes must leave it out.
_start_cpu, _start_wall = time.process_time(), time.monotonic()


def other_load():
    """The 1-minute load average without this process's own recent share, or None when the
    platform has no load average.

    This process's share is estimated as its CPU time since fastmlp was imported over at
    least one minute of wall time (the load average's window): a process that just started
    adds little, one that has kept a core busy for minutes adds about 1."""
    if not hasattr(os, "getloadavg"):
        return None
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    own = (time.process_time() - _start_cpu) / max(time.monotonic() - _start_wall, 60.0)
    others = max(0.0, load - own)
    now = _runnable_others()
    return others if now is None else min(others, float(now))


def _runnable_others():
    """Tasks runnable right now besides the calling thread (Linux's ``/proc/loadavg``), or
    None where that is not available."""
    try:
        with open("/proc/loadavg") as fh:
            runnable = int(fh.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0, runnable - 1)


def oversubscribed(threads, load=None, cores=None):
    """``(load, cores)`` when ``load + threads > cores + MARGIN``, else None.

    ``load`` defaults to :func:`other_load` (None there: never oversubscribed), ``cores``
    to :func:`fastmlp.threads.available_cores`."""
    load = other_load() if load is None else float(load)
    cores = available_cores() if cores is None else int(cores)
    _log.debug("oversubscription check: load %s (others') + %d threads on %d cores",
               load, threads, cores)
    if load is None or load + threads <= cores + MARGIN:
        return None
    return load, cores


def warn_if_oversubscribed(threads, fix, load=None, cores=None):
    """Warn (:class:`OversubscriptionWarning`, once per process) when ``threads`` threads
    would oversubscribe the machine (:func:`oversubscribed`); ``fix`` says what to do. The
    warning points at the caller's first line outside fastmlp (its ``fit`` call).

    One thread is never warned about: fewer threads would not help. Returns True when it
    warned."""
    global _warned
    if threads <= 1 or _warned:
        return False
    found = oversubscribed(threads, load, cores)
    if found is None:
        return False
    with _lock:
        if _warned:
            return False
        _warned = True
    load, cores = found
    warnings.warn(f"this machine is oversubscribed: other processes keep {load:.1f} cores busy "
                  f"(1-minute load average) and this run uses {threads} threads, on {cores} "
                  f"cores. Thread pools then wait for descheduled threads, often many times "
                  f"slower. Fix: {fix}", OversubscriptionWarning, stacklevel=_outside_fastmlp())
    return True


def _outside_fastmlp():
    """``stacklevel`` for a ``warnings.warn`` in the function that calls this one: its
    first caller (outward) whose code is not in the fastmlp package."""
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(2), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def reset_warning():
    """Warn again at the next oversubscribed run (the warning is once per process)."""
    global _warned
    with _lock:
        _warned = False
