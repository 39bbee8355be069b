"""Progress and messages: the one progress helper (a bar on a terminal or in a notebook, whole
lines anywhere else), the estimators' ``verbose`` lines against scikit-learn's own output,
and library diagnostics on the ``fastmlp`` logger.

A terminal is stood in for by a stream whose ``isatty()`` is True; "redirected" is a real
file (a subprocess writing into it) or a StringIO.
"""
import contextlib
import io
import logging
import re
import subprocess
import sys
import tempfile
import types
import warnings

import numpy as np
import pytest
from sklearn import neural_network

import fastmlp
from fastmlp import _progress
from fastmlp.datasets import load_digits


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def _run(fn, stderr):
    """``fn()`` with stdout captured and stderr sent to ``stderr``; returns stdout's text."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(stderr):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # ConvergenceWarning
            fn()
    return out.getvalue()


# ---------------------------------------------------------------- the helper

def test_no_bar_when_stderr_is_not_a_terminal():
    err = io.StringIO()

    def use():
        with _progress.Progress(5, "step") as p:
            for i in range(5):
                p.update(loss=f"{i}")
                if i % 2 == 0:
                    p.write(f"line {i}")
            assert not p.has_bar

    assert _run(use, err) == "line 0\nline 2\nline 4\n"
    assert err.getvalue() == ""


def test_bar_on_a_terminal_and_whole_lines_on_stdout():
    err = FakeTerminal()

    def use():
        with _progress.Progress(3, "step") as p:
            assert p.has_bar
            for i in range(3):
                p.update()
                p.write(f"line {i}")

    assert _run(use, err) == "line 0\nline 1\nline 2\n"
    assert "step/s" in err.getvalue() and "/3 [" in err.getvalue()   # tqdm's bar


def test_notebook_gets_a_bar(monkeypatch):
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert _progress.in_notebook()
    assert _progress.shows_bar(io.StringIO())
    shell.config = {}   # a terminal IPython: no kernel
    assert not _progress.in_notebook()
    assert not _progress.shows_bar(io.StringIO())


# ---------------------------------------------------------------- the Trainer and the CLI

def _trainer(verbose):
    (x, t), (xt, tt) = load_digits(normalize=True)
    net = fastmlp.MultiLayerNet(64, [10], 10, seed=0)
    return fastmlp.Trainer(net, x[:200], t[:200], xt[:50], tt[:50], epochs=2,
                           mini_batch_size=50, verbose=verbose, seed=0)


def test_trainer_bar_on_a_terminal_same_book_lines():
    plain_err, tty_err = io.StringIO(), FakeTerminal()
    plain = _run(_trainer(True).train, plain_err)
    on_tty = _run(_trainer(True).train, tty_err)
    assert plain == on_tty          # the book's lines, bar or not
    assert plain.splitlines()[0].startswith("=== epoch:1, train acc:")
    assert plain_err.getvalue() == ""
    assert "/8 [" in tty_err.getvalue()   # the bar: 2 epochs x 4 steps


def test_redirected_output_has_no_carriage_returns(tmp_path):
    """``fastmlp train`` and a verbose=2 fit with stdout and stderr in one file: whole lines."""
    log = tmp_path / "log.txt"
    script = ("import warnings, numpy as np, fastmlp\n"
              "from fastmlp.cli import main\n"
              "main(['train', '--epochs', '2', '--hidden', '10'])\n"
              "rng = np.random.default_rng(0)\n"
              "X = rng.standard_normal((60, 3)); y = (X[:, 0] > 0).astype(int)\n"
              "warnings.simplefilter('ignore')\n"
              "fastmlp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, verbose=2,"
              " random_state=0).fit(X, y)\n")
    with open(log, "w") as f:
        proc = subprocess.run([sys.executable, "-c", script], stdout=f, stderr=f,
                              cwd=tempfile.gettempdir(), timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text and "\x1b" not in text
    assert text.count("=== epoch:") == 2 and text.count("Iteration ") == 3
    assert text.endswith("\n")


# ---------------------------------------------------------------- verbose = sklearn's lines

_NUMBER = re.compile(r"-?\d+\.\d+")
# every line sklearn's verbose fit prints (stochastic solvers), as a pattern
_SKLEARN_LINE = re.compile(
    r"Iteration \d+, loss = \d+\.\d{8}"
    r"|Validation score: -?\d+\.\d{6}"
    r"|(Training loss|Validation score) did not improve more than tol=\d+\.\d{6} for \d+ "
    r"consecutive epochs\. (Stopping\.|Learning rate too small\. Stopping\."
    r"|Setting learning rate to \d+\.\d{6})")

SETTINGS = {
    "adam": dict(max_iter=4),
    "early_stopping": dict(max_iter=20, early_stopping=True, n_iter_no_change=2, tol=100.0),
    "loss_plateau": dict(max_iter=20, n_iter_no_change=2, tol=100.0),
    "adaptive": dict(solver="sgd", learning_rate="adaptive", max_iter=40, n_iter_no_change=1,
                     tol=100.0),
}


def _verbose_fit(cls, kind, settings, verbose=True, stderr=None):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4))
    y = (X[:, 0] - X[:, 1] > 0).astype(int) if kind == "classifier" else X[:, 0] * 2 + X[:, 2]
    model = cls(hidden_layer_sizes=(6,), random_state=0, verbose=verbose, **settings)
    return _run(lambda: model.fit(X, y), io.StringIO() if stderr is None else stderr)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
@pytest.mark.parametrize("name", list(SETTINGS))
def test_verbose_lines_are_sklearns(kind, name):
    """Same settings, same lines once the numbers are masked (the values differ: other
    initial weights); every stop rule's message word for word."""
    ours_cls = fastmlp.MLPClassifier if kind == "classifier" else fastmlp.MLPRegressor
    theirs_cls = (neural_network.MLPClassifier if kind == "classifier"
                  else neural_network.MLPRegressor)
    ours = _verbose_fit(ours_cls, kind, SETTINGS[name])
    theirs = _verbose_fit(theirs_cls, kind, SETTINGS[name])
    for line in theirs.splitlines():     # the pattern describes sklearn's output
        assert _SKLEARN_LINE.fullmatch(line), line
    for line in ours.splitlines():
        assert _SKLEARN_LINE.fullmatch(line), line
    assert _NUMBER.sub("X", ours) == _NUMBER.sub("X", theirs)
    # the tolerance and learning rates are fixed numbers, not values of the fit
    assert [m for m in re.findall(r"tol=\S+|to \S+", ours)] == re.findall(r"tol=\S+|to \S+", theirs)


def test_lbfgs_verbose():
    """sklearn's lbfgs prints nothing of its own (scipy >= 1.15 takes no iprint); level 2
    adds fastmlp's per-iteration lines."""
    kw = dict(solver="lbfgs", max_iter=5)
    ours = _verbose_fit(fastmlp.MLPClassifier, "classifier", kw, 1)
    theirs = _verbose_fit(neural_network.MLPClassifier, "classifier", kw, 1)
    assert _NUMBER.sub("X", ours) == _NUMBER.sub("X", theirs)
    two = _verbose_fit(fastmlp.MLPClassifier, "classifier", kw, 2).splitlines()
    assert two and all(re.fullmatch(rf"Iteration {i}, loss = \d+\.\d{{8}}", line)
                       for i, line in enumerate(two, 1))


def test_verbose_lines_of_an_epoch_cut_by_divergence():
    """With early_stopping a divergence ends the fit (a ConvergenceWarning says why); the
    cut epoch still gets sklearn's two lines."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4)) * 100
    model = fastmlp.MLPRegressor(hidden_layer_sizes=(6,), solver="sgd", learning_rate_init=10.0,
                                 early_stopping=True, verbose=1, random_state=0, max_iter=20)
    lines = _run(lambda: model.fit(X, X[:, 0] * 1e3), io.StringIO()).splitlines()
    assert not np.isfinite(model.loss_curve_[-1])
    assert len(lines) == 2 * len(model.loss_curve_)
    assert re.fullmatch(rf"Iteration {len(model.loss_curve_)}, loss = (inf|nan)", lines[-2])
    assert lines[-1] == "Validation score: nan"


def test_verbose_levels():
    kw = dict(max_iter=3)
    quiet_err, err1, err2, err2_plain = FakeTerminal(), FakeTerminal(), FakeTerminal(), io.StringIO()
    assert _verbose_fit(fastmlp.MLPClassifier, "classifier", kw, False, quiet_err) == ""
    one = _verbose_fit(fastmlp.MLPClassifier, "classifier", kw, 1, err1)
    two = _verbose_fit(fastmlp.MLPClassifier, "classifier", kw, 2, err2)
    two_plain = _verbose_fit(fastmlp.MLPClassifier, "classifier", kw, 2, err2_plain)
    assert one == two == two_plain and one.count("Iteration ") == 3
    assert quiet_err.getvalue() == err1.getvalue() == err2_plain.getvalue() == ""
    assert "MLPClassifier" in err2.getvalue() and "/3 [" in err2.getvalue()   # the bar


# ---------------------------------------------------------------- logging

def test_thread_decisions_are_logged(caplog):
    saved = fastmlp.get_num_threads()
    with caplog.at_level(logging.DEBUG, logger="fastmlp"):
        with fastmlp.threadpool_limits(1):
            pass
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("fastmlp")]
    assert any("threadpool_limits(1)" in m for m in messages), messages
    assert fastmlp.get_num_threads() == saved


def test_library_logging_is_silent_unless_configured():
    script = ("import logging, fastmlp\n"
              "logging.getLogger('fastmlp.threads').warning('not shown')\n"
              "with fastmlp.threadpool_limits(1): pass\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""
