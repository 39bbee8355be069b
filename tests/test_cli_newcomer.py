"""The command line as a newcomer meets it (issue #15): --version, --plot checked before
training, one summary with plurals, gradcheck's verdict, Ctrl-C with --save, bench's width."""
import os
import re
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cli(*args, **kw):
    """``python -m fastmlp ARGS`` with the installed package, from a neutral directory."""
    return subprocess.run([sys.executable, "-m", "fastmlp", *args], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=300, **kw)


def test_version():
    proc = _cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"fastmlp {fastmlp.__version__}"
    from importlib import metadata
    try:
        assert metadata.version("fastmlp") == fastmlp.__version__
    except metadata.PackageNotFoundError:   # run from a source tree that is not installed
        pass


# ---------------------------------------------------------------- --plot


def test_plot_with_an_unsupported_extension_fails_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "1", "--hidden", "10", "--plot", str(tmp_path / "x.txt")])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""   # nothing trained
    assert "argument --plot" in err and "'.txt'" in err and ".png" in err and ".svg" in err
    assert not list(tmp_path.iterdir())


def test_plot_without_extension_reports_the_file_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "curves"
    assert main(["train", "--epochs", "1", "--hidden", "10", "--quiet", "--plot", str(target)]) == 0
    out = capsys.readouterr().out
    written = tmp_path / "curves.png"
    assert f"wrote {written}\n" in out
    assert written.read_bytes().startswith(PNG_SIGNATURE) and not target.exists()


def test_plot_in_another_format(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "curves.svg"
    assert main(["train", "--epochs", "1", "--hidden", "10", "--quiet", "--plot", str(target)]) == 0
    assert f"wrote {target}\n" in capsys.readouterr().out
    assert b"<svg" in target.read_bytes()[:1000]


# ---------------------------------------------------------------- the summary


def test_final_accuracy_printed_once_with_plurals(capsys):
    assert main(["train", "--epochs", "1", "--hidden", "10", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "Final Test Accuracy" not in out
    assert "1 epochs" not in out and ", 1 epoch\n" in out   # the network line
    summary = [line for line in out.splitlines() if line.startswith("test acc ")]
    assert len(summary) == 1
    assert re.match(rf"^test acc \d\.\d{{4}} \| 1 epoch, {1438 // 32} steps in ", summary[0])


# ---------------------------------------------------------------- gradcheck


def _rows(out):
    return dict(re.findall(r"^\s*(\w+): mean abs diff \S+, largest error \S+ of the bound: "
                           r"(PASS|FAIL)(?: \(\d+ next to a ReLU kink not checked\))?$", out,
                           flags=re.M))


@pytest.mark.parametrize("extra", [[], ["--reference"]], ids=["compiled", "reference"])
def test_gradcheck_float32_passes(extra):
    proc = _cli("gradcheck", "--dtype", "float32", *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "|a - n| <= 1e-05*max|n| + 0.001*|n|" in proc.stdout   # the stated float32 bound
    assert _rows(proc.stdout) == {"W1": "PASS", "b1": "PASS", "W2": "PASS", "b2": "PASS"}
    assert proc.stdout.splitlines()[-1] == "PASS"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradcheck_leaves_out_elements_next_to_a_relu_kink(dtype):
    """Seed 2 on 20 digits puts hidden units within the step of ReLU's kink: a central
    difference across it is no derivative (each such element was off by 100-5000 times the
    bound), so those elements are left out, and the output says how many."""
    proc = _cli("gradcheck", "--dtype", dtype, "--seed", "2", "--batch", "20")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^\s*W1: .* PASS \(\d+ next to a ReLU kink not checked\)$", proc.stdout,
                     flags=re.M), proc.stdout
    assert _rows(proc.stdout) == {"W1": "PASS", "b1": "PASS", "W2": "PASS", "b2": "PASS"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradcheck_fails_on_a_wrong_backward(dtype, monkeypatch, capsys):
    """A backward 1% off in W1 (the float32 smoke bound, 5% + 1e-3, would miss it)."""
    from fastmlp.networks import TwoLayerNet
    right = TwoLayerNet.gradient

    def wrong(self, x, t, *args, **kwargs):
        grads = dict(right(self, x, t, *args, **kwargs))
        grads["W1"] = grads["W1"] * np.asarray(1.01, grads["W1"].dtype)
        return grads

    monkeypatch.setattr(TwoLayerNet, "gradient", wrong)
    assert main(["gradcheck", "--dtype", dtype]) == 1
    out = capsys.readouterr().out
    assert _rows(out) == {"W1": "FAIL", "b1": "PASS", "W2": "PASS", "b2": "PASS"}
    assert out.splitlines()[-1] == "FAIL: W1"


# ---------------------------------------------------------------- Ctrl-C with --save


def _params(path):
    return {k: np.array(v) for k, v in fastmlp.load(path).params.items()}


def test_ctrl_c_saves_the_last_completed_epoch(tmp_path):
    settings = ["train", "--hidden", "20", "--threads", "1", "--seed", "3"]
    target = tmp_path / "interrupted.fmlp"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "fastmlp", *settings, "--epochs", "1000",
                             "--save", str(target)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    try:
        for line in proc.stdout:   # wait until the first epoch has completed
            if line.startswith("=== epoch:1,"):
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    m = re.search(r"interrupted: saved the network as it was after epoch (\d+) \(the last "
                  r"completed\) to (\S+)\n", err)
    assert m and m.group(2) == str(target), err
    epochs = int(m.group(1))
    assert 1 <= epochs < 1000
    # the same run stopped after that many epochs: bit for bit the saved network
    reference = tmp_path / "reference.fmlp"
    done = _cli(*settings, "--epochs", str(epochs), "--save", str(reference))
    assert done.returncode == 0, done.stderr
    saved, expected = _params(target), _params(reference)
    assert saved.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(saved[key], expected[key], strict=True)


def test_ctrl_c_before_the_first_epoch_saves_nothing(tmp_path, monkeypatch, capsys):
    import fastmlp.trainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fastmlp.trainer, "step", interrupted)
    target = tmp_path / "model.fmlp"
    assert main(["train", "--epochs", "2", "--hidden", "10", "--save", str(target)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted before the first epoch ended: nothing saved to {target}" in err
    assert not target.exists()


# ---------------------------------------------------------------- bench


def test_bench_without_torch_and_sklearn_fits_100_columns(monkeypatch, capsys):
    for name in ("torch", "sklearn", "sklearn.neural_network"):
        monkeypatch.setitem(sys.modules, name, None)   # import now fails: as if not installed
    assert main(["bench", "--quick", "--seconds", "0.02", "--repeats", "1", "--configs", "4",
                 "--dtypes", "float32"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100, out
    assert "n/a" not in out
    assert "not installed, so left out: PyTorch" in out and "scikit-learn" in out
    headers = [line.split() for line in out.splitlines() if line.startswith("network @batch")]
    assert headers == [["network", "@batch", "dtype", "GEMM", "limit", "fastmlp", "numpy", "busy"],
                       ["network", "@batch", "dtype", "fastmlp", "numpy", "÷numpy"]]
