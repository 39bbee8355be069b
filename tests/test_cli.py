"""The ``fastmlp`` command line: ``python -m fastmlp train|gradcheck`` in subprocesses and in-process."""
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp.cli import main
from fastmlp.datasets._mnist import _write_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SUMMARY = re.compile(r"^test acc (\d\.\d{4}) \| (\d+) epochs?, (\d+) steps? in [\d.]+ s \| [\d,]+ samples/s")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_cli(*args, timeout=120):
    """``python -m fastmlp ARGS`` with the installed package, from a neutral directory."""
    return subprocess.run([sys.executable, "-m", "fastmlp", *args], capture_output=True, text=True,
                          cwd=tempfile.gettempdir(), timeout=timeout)


def summary_of(stdout):
    lines = [m for m in map(SUMMARY.match, stdout.splitlines()) if m]
    assert len(lines) == 1, stdout
    return float(lines[0].group(1)), int(lines[0].group(2)), int(lines[0].group(3))


@pytest.fixture
def tiny_mnist(tmp_path):
    """Four small IDX files (gzipped, as MNIST ships) whose classes a network can learn."""
    rng = np.random.default_rng(0)

    def split(n):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 40, (n, 28, 28))
        for c in range(10):  # class c lights up rows 2c..2c+2
            images[labels == c, 2 * c:2 * c + 3, :] += 200
        return images.clip(0, 255).astype(np.uint8), labels

    for prefix, n in (("train", 300), ("t10k", 100)):
        images, labels = split(n)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return tmp_path


# ---------------------------------------------------------------- subprocess runs


def test_train_two_epochs_subprocess():
    proc = run_cli("train", "--epochs", "2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "data: digits, 1438 train / 359 test samples" in out
    epoch_lines = [line for line in out.splitlines() if line.startswith("=== epoch:")]
    assert len(epoch_lines) == 2 and "train acc:" in epoch_lines[0] and "test acc:" in epoch_lines[0]
    acc, epochs, steps = summary_of(out)
    assert epochs == 2 and steps == int(2 * 1438 / 32)
    assert acc > 0.8
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal


def test_gradcheck_subprocess():
    proc = run_cli("gradcheck")
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s*(\w+): mean abs diff (\S+), largest error (\S+) of the bound: PASS$",
                     line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    assert list(rows) == ["W1", "b1", "W2", "b2"]
    for name, (mean_abs_diff, share) in rows.items():
        assert 0 <= mean_abs_diff < 1e-8, name  # float64 backprop agrees with central differences
        assert 0 <= share <= 1, name
    assert proc.stdout.splitlines()[-1] == "PASS"


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install fastmlp[plot])")
    out = tmp_path / "curves.png"
    proc = run_cli("train", "--epochs", "2", "--quiet", "--plot", str(out))
    assert proc.returncode == 0, proc.stderr
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    from matplotlib.image import imread
    image = imread(out)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # not a blank canvas
    assert f"wrote {out}" in proc.stdout


def test_threads_option_subprocess():
    proc = run_cli("train", "--epochs", "1", "--quiet", "--threads", "1", "--dtype", "float32",
                   "--hidden", "30", "30", "--optimizer", "SGD", "--lr", "0.1")
    assert proc.returncode == 0, proc.stderr
    assert "64-30-30-10 float32" in proc.stdout
    summary_of(proc.stdout)


@pytest.mark.skipif(not FASHION_DIR.is_dir(),
                    reason=f"{FASHION_DIR} absent (apt-get install dataset-fashion-mnist)")
def test_train_on_fashion_mnist_files():
    """The real 28x28 files: one epoch of the issue's 784-100-10 SGD run already passes 0.80."""
    proc = run_cli("train", "--mnist", str(FASHION_DIR), "--epochs", "1", "--optimizer", "sgd",
                   "--lr", "0.1", "--batch-size", "100", "--dtype", "float32", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    assert "60000 train / 10000 test samples" in proc.stdout
    acc, _, steps = summary_of(proc.stdout)
    assert steps == 600 and acc > 0.80


# ---------------------------------------------------------------- in-process


def test_train_in_process_quiet(capsys):
    assert main(["train", "--epochs", "3", "--quiet", "--hidden", "40", "20", "--seed", "3",
                 "--optimizer", "rmsprop", "--weight-decay", "1e-4", "--lr-decay", "0.9"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and err == ""
    acc, epochs, _ = summary_of(out)
    assert epochs == 3 and acc > 0.8


def test_train_seed_reproducible(capsys):
    args = ["train", "--epochs", "2", "--quiet", "--hidden", "20", "--seed", "11"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    second = capsys.readouterr().out
    assert summary_of(first)[0] == summary_of(second)[0]


def test_train_reference_network(capsys):
    assert main(["train", "--epochs", "1", "--hidden", "20", "--reference"]) == 0
    out = capsys.readouterr().out
    assert "reference (numpy) MultiLayerNet 64-20-10" in out
    summary_of(out)


def test_train_mnist_dir(tiny_mnist, capsys):
    assert main(["train", "--mnist", str(tiny_mnist), "--epochs", "3", "--batch-size", "20"]) == 0
    out = capsys.readouterr().out
    assert "300 train / 100 test samples" in out and "784-100-10" in out
    assert summary_of(out)[0] > 0.5


def test_missing_mnist_dir_or_file(tmp_path, capsys):
    assert main(["train", "--mnist", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastmlp train: error:") and "does not exist" in err
    assert main(["train", "--mnist", str(tmp_path)]) == 1  # exists, but holds no IDX files
    err = capsys.readouterr().err
    assert err.startswith("fastmlp train: error:") and "not found" in err


def test_corrupt_mnist_file(tiny_mnist, capsys):
    path = tiny_mnist / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    assert main(["train", "--mnist", str(tiny_mnist), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "fastmlp train: error:" in err and "t10k-labels" in err


def test_batch_larger_than_data(capsys):
    assert main(["train", "--batch-size", "5000", "--epochs", "1"]) == 1
    assert "--batch-size 5000 exceeds the 1438 training samples" in capsys.readouterr().err


def test_divergence_is_reported(capsys):
    """A huge learning rate with strong weight decay: a one-line error naming the step, exit 1."""
    code = main(["train", "--epochs", "20", "--optimizer", "sgd", "--lr", "30", "--weight-decay", "1",
                 "--dtype", "float32", "--quiet"])
    assert code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert re.search(r"fastmlp train: error: training diverged: the loss became (nan|inf) at step \d+",
                     err)


def test_plot_without_matplotlib(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert main(["train", "--epochs", "1", "--plot", str(tmp_path / "p.png")]) == 1
    out, err = capsys.readouterr()
    assert "pip install fastmlp[plot]" in err
    assert out == ""  # failed before training
    assert not (tmp_path / "p.png").exists()


def test_plot_into_missing_directory(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install fastmlp[plot])")
    assert main(["train", "--plot", str(tmp_path / "no" / "p.png")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_save(tmp_path, capsys):
    target = tmp_path / "model.fmlp"
    code = main(["train", "--epochs", "1", "--quiet", "--hidden", "20", "--save", str(target)])
    out, err = capsys.readouterr()
    if getattr(fastmlp, "save", None) is None:
        assert code == 1 and "--save needs fastmlp.save" in err and out == ""
        return
    assert code == 0 and target.is_file() and f"saved the network to {target}" in out
    model = fastmlp.load(target)
    assert model.params["W1"].shape == (64, 20)


@pytest.mark.parametrize("args, message", [
    ([], "required: COMMAND"),
    (["train", "--epochs", "0"], "--epochs: expected a positive integer, got 0"),
    (["train", "--epochs", "two"], "--epochs: expected a positive integer"),
    (["train", "--lr", "-1"], "--lr: expected a finite number > 0"),
    (["train", "--lr", "nan"], "--lr: expected a finite number > 0"),
    (["train", "--lr-decay", "1.5"], "--lr-decay: expected a factor in (0, 1], got 1.5"),
    (["train", "--seed", "-1"], "--seed: expected a non-negative integer, got -1"),
    (["gradcheck", "--batch", "0"], "--batch: expected a positive integer, got 0"),
    (["train", "--weight-decay", "-0.1"], "--weight-decay: expected a finite number >= 0"),
    (["train", "--optimizer", "adamw"], "--optimizer: invalid choice: 'adamw'"),
    (["train", "--dtype", "float16"], "--dtype: invalid choice"),
    (["train", "--activation", "softplus"], "--activation: invalid choice"),
    (["train", "--hidden"], "--hidden: expected at least one argument"),
    (["train", "--hidden", "10", "0"], "--hidden: expected a positive integer, got 0"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "gradcheck" in out
