"""Progress display, one helper for the Trainer, the estimators and ``fastmlp train``.

On a terminal (stderr is one) or in a Jupyter notebook: a ``tqdm.auto`` bar on stderr that
does not stay on screen, with whole lines printed above it. Anywhere else (output
redirected to a file or a pipe, captured by a test): no bar, only the whole lines, so a
log file never holds a bar's ``\\r`` fragments.
"""
import sys

__all__ = ["Progress", "in_notebook", "shows_bar"]


def in_notebook():
    """True inside a Jupyter kernel (where tqdm.auto draws a widget)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if get is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def shows_bar(stream=None):
    """Whether a bar goes to ``stream`` (default ``sys.stderr``): it is a terminal, or this
    is a notebook."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):   # a closed or detached stream
        tty = False
    return tty or in_notebook()


class Progress:
    """A progress display over ``total`` units (steps, epochs) starting at ``initial``.

    ``bar=False`` never draws a bar (lines only); ``bar=None`` draws one where
    :func:`shows_bar`. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, total, unit, *, initial=0, desc=None, bar=None):
        self._bar = None
        if bar is None:
            bar = shows_bar()
        if bar:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, initial=initial, unit=unit, desc=desc, leave=False,
                             dynamic_ncols=True, file=sys.stderr)

    @property
    def has_bar(self):
        return self._bar is not None

    def update(self, n=1, **postfix):
        """Advance by ``n``; ``postfix`` items (already formatted) are shown beside the bar."""
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(n)

    def set_postfix(self, **postfix):
        if self._bar is not None:
            self._bar.set_postfix(postfix, refresh=False)

    def write(self, line):
        """Print ``line`` (a whole line) on stdout, above the bar if there is one."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stdout)
        else:
            print(line, flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

