"""Ctrl-C during training: a SIGINT that arrives inside a critical section is delivered
when the section ends, so what the section changes (an update and its bookkeeping)
happens whole or not at all. Used by the optimizers, the Trainer and the estimators."""
import signal
import threading


class _SigintDeferral:
    """The main thread's SIGINT handler while fastmlp trains: a Ctrl-C that arrives inside a
    critical section (``with deferral:``) is delivered when the outermost one ends, so the
    section's changes (a parameter update and its bookkeeping) happen whole or not at all.
    Outside critical sections the previous handler runs at once."""

    def __init__(self):
        self.depth = 0          # nesting of critical sections (main thread only)
        self.pending = None     # (signum, frame) of a deferred SIGINT
        self.installs = 0       # nesting of deferred_sigint()
        self.previous = None    # the handler to defer to (Python's default_int_handler)

    def handle(self, signum, frame):
        if self.depth or _in_uninstall(frame):
            self.pending = (signum, frame)
            return
        self.pending = None
        self.previous(signum, frame)

    def __enter__(self):
        self.depth += 1
        return self

    def __exit__(self, *exc):
        self.depth -= 1
        if self.depth == 0 and self.pending is not None:
            signum, frame = self.pending
            self.pending = None
            self.previous(signum, frame)   # default_int_handler: raises KeyboardInterrupt
        return False


class _NoDeferral:
    """The critical section of threads other than the main one (no signal reaches them)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_DEFERRAL = _SigintDeferral()
_MAIN_THREAD_ID = threading.main_thread().ident
_NO_DEFERRAL = _NoDeferral()


class deferred_sigint:
    """Context manager whose ``with`` gives a reusable critical-section context manager.

    In the main thread, while the block runs, SIGINT goes to a handler that
    defers it to the end of the current critical section; the previous handler
    is restored afterwards. Nothing is installed in other threads (signals are
    delivered to the main thread only) or when SIGINT is not handled by Python
    code (SIG_DFL, SIG_IGN): the critical section then does nothing. Nestable.
    Installing and restoring are themselves critical sections, so a Ctrl-C at
    any moment never leaves the handler behind; what :meth:`on_exit` registers
    runs in the restoring section too.
    """

    def __init__(self):
        self.active = False
        self._on_exit = []

    def on_exit(self, fn):
        """Call ``fn()`` when the block ends, as part of restoring the handler: a Ctrl-C can
        neither skip it nor stop it half-way. For what a block takes and must give back
        (a fit's limit on numpy's BLAS threads): register it in the critical section that
        takes it."""
        self._on_exit.append(fn)

    def _give_back(self):
        """Run the on_exit callbacks, last registered first; the first error is raised
        after all have run."""
        error = None
        while self._on_exit:
            try:
                self._on_exit.pop()()
            except Exception as exc:   # noqa: PERF203 - each callback must run
                error = error or exc
        return error

    def __enter__(self):
        d = _DEFERRAL
        if threading.get_ident() != _MAIN_THREAD_ID:
            return _NO_DEFERRAL
        if d.installs == 0:
            d.pending, d.depth = None, 1   # a SIGINT from here on waits in d.pending
            previous = signal.signal(signal.SIGINT, d.handle)
            if previous != d.handle:        # (else left behind by an interrupted exit)
                d.previous = previous
            if not callable(d.previous):    # SIG_DFL, SIG_IGN, or set from C: not ours to defer
                signal.signal(signal.SIGINT, d.previous)
                d.depth = 0
                if d.pending is not None and d.previous == signal.SIG_DFL:
                    d.pending = None
                    signal.raise_signal(signal.SIGINT)
                return _NO_DEFERRAL
        else:
            d.depth += 1
        d.installs += 1
        self.active = True
        d.depth -= 1
        if d.depth == 0 and d.pending is not None:   # a SIGINT during the install
            self.__exit__(None, None, None)          # uninstall, then deliver it
        return d

    def __exit__(self, *exc):
        if not self.active:
            error = self._give_back()
            if error is not None:
                raise error
            return False
        self.active = False
        d = _DEFERRAL
        d.depth += 1   # deferred while restoring
        error = self._give_back()
        d.installs -= 1
        if d.installs == 0:
            replaced = signal.signal(signal.SIGINT, d.previous)
            if replaced != d.handle:   # someone installed their own handler meanwhile: keep it
                signal.signal(signal.SIGINT, replaced)
        d.depth -= 1
        if d.depth == 0 and d.pending is not None:
            signum, frame = d.pending
            d.pending = None
            d.previous(signum, frame)
        if error is not None:
            raise error
        return False


_UNINSTALL_CODE = deferred_sigint.__exit__.__code__


def _in_uninstall(frame):
    """Whether ``frame`` runs inside deferred_sigint.__exit__. A SIGINT handled on entry to
    it (Python checks for signals on entering a function), or in code it triggers (another
    signal's handler, a finalizer), would abort the uninstall and leave the handler behind:
    it is deferred, and that __exit__ delivers it when done."""
    while frame is not None:
        if frame.f_code is _UNINSTALL_CODE:
            return True
        frame = frame.f_back
    return False


def critical_section():
    """The current critical section: the installed deferral in the main thread, else a no-op."""
    d = _DEFERRAL
    if d.installs and threading.get_ident() == _MAIN_THREAD_ID:
        return d
    return _NO_DEFERRAL
