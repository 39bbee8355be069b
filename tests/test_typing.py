"""The public API's type hints as a user's type checker sees them (issue 15).

``mypy --strict`` (which includes ``--disallow-untyped-calls``) runs in a subprocess, from
a temporary directory, on ``tests/typing_usage.py`` (the public API used as a typed
script would: networks, layers, optimizers, Trainer, save/load, estimators, interop) and
on a file of deliberately wrong calls. The first must give no error; the second exactly
the errors its ``# E: <code>`` comments name, so hints that vanish (everything ``Any``)
or loosen fail here too. mypy checks the fastmlp these tests import: the installed
package (with its ``py.typed``), found where the interpreter finds it; only when that is
a source tree outside site-packages (an editable install, whose import hook mypy cannot
follow) is its parent directory given to mypy as ``MYPYPATH``.
"""
import os
import re
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import fastmlp

pytest.importorskip("mypy")

TESTS = Path(__file__).resolve().parent
USAGE = TESTS / "typing_usage.py"
CONFIG = TESTS.parent / "pyproject.toml"   # the package's mypy settings, when in a checkout

WRONG_CALLS = '''\
import numpy as np

import fastmlp
from fastmlp import layers, optimizers

net = fastmlp.MultiLayerNet(64, "32", 10)  # E: arg-type
net2 = fastmlp.MultiLayerNet(64, [32], 10, seed="0")  # E: arg-type
label: str = net2.predict(np.zeros((1, 64)))  # E: assignment
count: int = net2.loss(np.zeros((1, 64)), [0])  # E: assignment
grads: list[np.ndarray] = net2.gradient(np.zeros((1, 64)), [0])  # E: assignment
fastmlp.TwoLayerNet(64, [50], 10)  # E: arg-type
fastmlp.Trainer(net2, [[0.0]], [0], [[0.0]], [0], epochs="3")  # E: arg-type
fastmlp.Trainer(net2, [[0.0]], [0], [[0.0]], [0], optimizer=3)  # E: arg-type
optimizers.Adam(lr="0.1")  # E: arg-type
layers.Dropout(0.5, rng="seed")  # E: arg-type
fastmlp.save(net2, 42)  # E: arg-type
fastmlp.set_num_threads("2")  # E: arg-type
fastmlp.MLPClassifier(hidden_layer_sizes="100")  # E: arg-type
proba: str = fastmlp.MLPClassifier().predict_proba(np.zeros((1, 2)))  # E: assignment
fastmlp.from_torch_state_dict({}, activation=1)  # E: arg-type
'''

ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def expected_errors(source):
    """{(line, code)} of the ``# E: <code>`` comments."""
    return {(i, m[1]) for i, text in enumerate(source.splitlines(), start=1)
            if (m := re.search(r"# E: ([a-z-]+)$", text))}


def mypy_env():
    """The environment, plus ``MYPYPATH`` for a fastmlp imported from outside site-packages."""
    env = dict(os.environ)
    package_parent = Path(fastmlp.__file__).resolve().parent.parent
    installed = {Path(p).resolve() for p in [*site.getsitepackages(), site.getusersitepackages(),
                                             sysconfig.get_paths()["purelib"],
                                             sysconfig.get_paths()["platlib"]]}
    if package_parent not in installed:
        env["MYPYPATH"] = str(package_parent)
    return env


def test_public_api_type_checks_strictly_and_rejects_wrong_calls(tmp_path):
    wrong = tmp_path / "wrong_calls.py"
    wrong.write_text(WRONG_CALLS)
    # errors only in the two files: fastmlp's own modules are checked by CI's mypy step
    command = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
               "--no-error-summary", "--show-error-codes", "--no-pretty",
               "--cache-dir", str(tmp_path / "cache")]
    if CONFIG.is_file() and "[tool.mypy]" in CONFIG.read_text():
        command += ["--config-file", str(CONFIG)]
    run = subprocess.run(command + [str(USAGE), str(wrong)], cwd=tmp_path, env=mypy_env(),
                         capture_output=True, text=True, timeout=900)
    report = run.stdout + run.stderr
    errors = [m for m in map(ERROR_LINE.match, run.stdout.splitlines()) if m]
    usage_errors = [m[0] for m in errors if Path(m["file"]).name == USAGE.name]
    assert not usage_errors, report
    got = {(int(m["line"]), m["code"]) for m in errors if Path(m["file"]).name == wrong.name}
    assert got == expected_errors(WRONG_CALLS), report
    assert run.returncode == 1, report   # errors found (wrong_calls.py), not a crash (2)
    assert all(ERROR_LINE.match(line) or "note:" in line
               for line in run.stdout.splitlines()), report
