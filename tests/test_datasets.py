"""Tests for fastmlp.datasets: the shipped digits and the MNIST IDX reader."""
import gzip
from pathlib import Path

import numpy as np
import pytest

from fastmlp.datasets import load_digits, load_mnist
from fastmlp.datasets._digits import _split_indices
from fastmlp.datasets._mnist import _write_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
NAMES = {
    "train_img": "train-images-idx3-ubyte",
    "train_label": "train-labels-idx1-ubyte",
    "test_img": "t10k-images-idx3-ubyte",
    "test_label": "t10k-labels-idx1-ubyte",
}


# ---------------------------------------------------------------- load_digits


def test_digits_defaults():
    (x_train, t_train), (x_test, t_test) = load_digits()
    assert x_train.shape == (1438, 64) and x_test.shape == (359, 64)
    assert t_train.shape == (1438,) and t_test.shape == (359,)
    assert x_train.dtype == x_test.dtype == np.float32
    assert t_train.dtype == t_test.dtype == np.uint8
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        assert x.flags.c_contiguous and x.flags.writeable
    assert set(np.unique(t_train)) == set(np.unique(t_test)) == set(range(10))


def test_digits_raw_and_normalized_agree():
    (x_raw, t_raw), (xt_raw, _) = load_digits(normalize=False)
    (x, t), (xt, _) = load_digits()
    assert x_raw.dtype == np.uint8 and x_raw.max() == 16
    np.testing.assert_array_equal(x, x_raw.astype(np.float32) / 16)
    np.testing.assert_array_equal(xt, xt_raw.astype(np.float32) / 16)
    np.testing.assert_array_equal(t, t_raw)


def test_digits_unflattened():
    (x, _), (xt, _) = load_digits(flatten=False)
    (xf, _), (xtf, _) = load_digits()
    assert x.shape == (1438, 1, 8, 8) and xt.shape == (359, 1, 8, 8)
    np.testing.assert_array_equal(x.reshape(len(x), -1), xf)
    np.testing.assert_array_equal(xt.reshape(len(xt), -1), xtf)


def test_digits_one_hot_matches_labels():
    (_, t1), (_, tt1) = load_digits(one_hot_label=True)
    (_, t), (_, tt) = load_digits()
    for onehot, labels in ((t1, t), (tt1, tt)):
        assert onehot.shape == (len(labels), 10) and onehot.dtype == np.float32
        np.testing.assert_array_equal(onehot.sum(axis=1), 1.0)
        np.testing.assert_array_equal(onehot.argmax(axis=1), labels)


def test_digits_split_is_fixed_and_ignores_global_rng():
    np.random.seed(0)
    first = load_digits()
    np.random.seed(12345)
    np.random.rand(10)
    second = load_digits()
    first[0][0][:] = -1.0  # returned arrays are fresh: mutating them changes nothing
    third = load_digits()
    for a, b in zip(second[0] + second[1], third[0] + third[1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.01, 0.99])
def test_digits_split_partitions_and_stratifies(fraction):
    (_, t_train), (_, t_test) = load_digits(test_fraction=fraction)
    assert len(t_train) + len(t_test) == 1797
    counts = np.bincount(t_train, minlength=10) + np.bincount(t_test, minlength=10)
    test_counts = np.bincount(t_test, minlength=10)
    assert np.all(np.abs(test_counts - fraction * counts) <= 1)
    assert np.all(test_counts >= 1) and np.all(test_counts < counts)


def test_digits_split_indices_are_a_partition():
    target = np.repeat(np.arange(10, dtype=np.uint8), 7)
    train, test = _split_indices(target, 0.3)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(70))
    np.testing.assert_array_equal(np.bincount(target[test]), [2] * 10)


@pytest.mark.parametrize("fraction", [0, 1, 0.0, 1.0, -0.1, 1.5, float("nan"), "0.2x", None, True])
def test_digits_bad_test_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=fraction)


def test_digits_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.datasets")
    ref = sk.load_digits()
    target = ref.target.astype(np.uint8)
    train, test = _split_indices(target, 0.2)
    (x, t), (xt, tt) = load_digits(normalize=False)
    np.testing.assert_array_equal(x, ref.data[train])
    np.testing.assert_array_equal(xt, ref.data[test])
    np.testing.assert_array_equal(t, target[train])
    np.testing.assert_array_equal(tt, target[test])


# ---------------------------------------------------------------- load_mnist


def _sample(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


def _write_mnist(directory, gz=False, dotted=False, n_train=6, n_test=4):
    """Write four small IDX files; return the arrays written and the file paths."""
    (tr_x, tr_t), (te_x, te_t) = _sample(n_train, 0), _sample(n_test, 1)
    arrays = {"train_img": tr_x, "train_label": tr_t, "test_img": te_x, "test_label": te_t}
    files = {}
    for key, name in NAMES.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        files[key] = Path(directory) / (name + (".gz" if gz else ""))
        _write_idx(files[key], arrays[key])
    return arrays, files


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dotted", [False, True], ids=["dashed", "dotted"])
def test_mnist_round_trip(tmp_path, gz, dotted):
    arrays, files = _write_mnist(tmp_path, gz=gz, dotted=dotted)
    assert all(f.exists() for f in files.values())
    (x, t), (xt, tt) = load_mnist(tmp_path, normalize=False, flatten=False)
    assert x.dtype == xt.dtype == t.dtype == tt.dtype == np.uint8
    assert x.shape == (6, 1, 28, 28) and xt.shape == (4, 1, 28, 28)
    np.testing.assert_array_equal(x[:, 0], arrays["train_img"])
    np.testing.assert_array_equal(xt[:, 0], arrays["test_img"])
    np.testing.assert_array_equal(t, arrays["train_label"])
    np.testing.assert_array_equal(tt, arrays["test_label"])
    assert x.flags.writeable and t.flags.writeable


def test_mnist_defaults_normalize_flatten_one_hot(tmp_path):
    arrays, _ = _write_mnist(tmp_path)
    (x, t), (xt, tt) = load_mnist(str(tmp_path))
    assert x.shape == (6, 784) and xt.shape == (4, 784) and x.dtype == np.float32
    np.testing.assert_array_equal(x, arrays["train_img"].reshape(6, 784).astype(np.float32) / 255)
    np.testing.assert_array_equal(t, arrays["train_label"])
    (_, t1), (_, tt1) = load_mnist(tmp_path, one_hot_label=True)
    assert t1.shape == (6, 10) and tt1.shape == (4, 10) and t1.dtype == np.float32
    np.testing.assert_array_equal(t1.argmax(axis=1), t)
    np.testing.assert_array_equal(t1.sum(axis=1), 1.0)


def test_mnist_mixed_spellings_and_compression(tmp_path):
    arrays, files = _write_mnist(tmp_path)
    for key in ("train_img", "test_label"):
        data = files[key].read_bytes()
        files[key].unlink()
        (tmp_path / (files[key].name.replace("-idx", ".idx") + ".gz")).write_bytes(gzip.compress(data))
    (x, _), (_, tt) = load_mnist(tmp_path, normalize=False)
    np.testing.assert_array_equal(x.reshape(6, 28, 28), arrays["train_img"])
    np.testing.assert_array_equal(tt, arrays["test_label"])


@pytest.mark.parametrize("key", list(NAMES))
def test_mnist_missing_file(tmp_path, key):
    _, files = _write_mnist(tmp_path)
    files[key].unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_mnist(tmp_path)
    assert NAMES[key] in str(err.value) and str(tmp_path) in str(err.value)


def test_mnist_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nope")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        load_mnist(tmp_path / "file")


def _idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    return (0x0800 + array.ndim).to_bytes(4, "big") + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()


def _gz(data):
    return gzip.compress(data, mtime=0)


# Each case: (file to corrupt, gzip it?, function from the good IDX bytes to bad bytes, message regex)
MALFORMED = {
    "wrong_magic_images": ("train_img", False, lambda d: (2049).to_bytes(4, "big") + d[4:], "magic"),
    "labels_in_image_slot": ("test_img", False, lambda d: _idx_bytes(np.zeros(4)), "magic"),
    "wrong_magic_labels": ("train_label", False, lambda d: b"\x00\x00\x08\x02" + d[4:], "magic"),
    "truncated_payload": ("train_img", False, lambda d: d[:-1], "truncated"),
    "truncated_payload_gz": ("test_img", True, lambda d: d[:-100], "truncated"),
    "trailing_bytes": ("train_label", False, lambda d: d + b"\x00", "trailing"),
    "truncated_header": ("test_img", False, lambda d: d[:10], "truncated header"),
    "tiny_header": ("test_label", False, lambda d: d[:3], "truncated header"),
    "empty_file": ("train_label", False, lambda d: b"", "truncated header"),
    "corrupt_gzip_truncated": ("train_img", True, lambda d: _gz(d)[:-20], "gzip"),
    "corrupt_gzip_garbled": ("test_label", True, lambda d: _gz(d)[:12] + b"\xff" * 20, "gzip"),
    "gzip_trailing_garbage": ("train_label", True, lambda d: _gz(d) + b"junk", "gzip"),
    "gz_name_not_gzip": ("test_label", True, lambda d: d, "not gzip"),
    "count_mismatch": ("train_label", False, lambda d: _idx_bytes(np.zeros(5)), "5 labels"),
    "label_out_of_range": ("test_label", False, lambda d: d[:-1] + b"\x0a", "outside 0..9"),
    "wrong_dims": ("train_img", False, lambda d: _idx_bytes(np.zeros((6, 27, 28))), "27x28"),
    "huge_dims": ("test_img", False, lambda d: d[:8] + b"\xff" * 8 + d[16:], "truncated"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_mnist_malformed(tmp_path, case):
    key, gz, corrupt, message = MALFORMED[case]
    _, files = _write_mnist(tmp_path, gz=gz)
    bad = corrupt(gzip.decompress(files[key].read_bytes()) if gz else files[key].read_bytes())
    if gz and not case.startswith(("corrupt_gzip", "gzip_", "gz_name")):
        bad = _gz(bad)
    files[key].write_bytes(bad)
    with pytest.raises(ValueError, match=message) as err:
        load_mnist(tmp_path)
    assert files[key].name in str(err.value)


@pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"{FASHION_DIR} absent (install the Debian package dataset-fashion-mnist)",
)
def test_fashion_mnist_real_files():
    (x, t), (xt, tt) = load_mnist(FASHION_DIR)
    assert x.shape == (60000, 784) and xt.shape == (10000, 784)
    assert t.shape == (60000,) and tt.shape == (10000,)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() == 1.0
    np.testing.assert_array_equal(np.bincount(t), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(tt), [1000] * 10)


# ---------------------------------------------------------------- shards (data-parallel ranks)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("size", [1, 3, 7, 9])
def test_mnist_shards_concatenate_to_the_training_set(tmp_path, gz, size):
    arrays, _ = _write_mnist(tmp_path, gz=gz, n_train=7)
    (x, t), (xt, tt) = load_mnist(tmp_path, normalize=False, flatten=False)
    parts = [load_mnist(tmp_path, normalize=False, flatten=False, shard=(r, size))
             for r in range(size)]
    np.testing.assert_array_equal(np.concatenate([p[0][0] for p in parts]), x)
    np.testing.assert_array_equal(np.concatenate([p[0][1] for p in parts]), t)
    for (xs, _), (xts, tts) in parts:
        assert xs.flags.writeable and xs.flags.c_contiguous
        np.testing.assert_array_equal(xts, xt)   # the test set whole on every rank
        np.testing.assert_array_equal(tts, tt)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_mnist_shard_still_checks_the_files(tmp_path, gz):
    _, files = _write_mnist(tmp_path, gz=gz, n_train=6)
    img = files["train_img"]
    data = gzip.decompress(img.read_bytes()) if gz else img.read_bytes()
    for bad, match in ((data + b"\0", "trailing bytes"), (data[:-1], "truncated")):
        img.write_bytes(gzip.compress(bad) if gz else bad)
        with pytest.raises(ValueError, match=match):
            load_mnist(tmp_path, shard=(0, 2))
    img.write_bytes(gzip.compress(data) if gz else data)
    label = files["train_label"]
    labels = bytearray(gzip.decompress(label.read_bytes()) if gz else label.read_bytes())
    labels[-1] = 10   # the last row belongs to rank 1 only
    label.write_bytes(gzip.compress(bytes(labels)) if gz else bytes(labels))
    load_mnist(tmp_path, shard=(0, 2))
    with pytest.raises(ValueError, match="label 10 at index 5"):
        load_mnist(tmp_path, shard=(1, 2))
    for shard in ((2, 2), (0, 0), (1,)):
        with pytest.raises((TypeError, ValueError), match="shard"):
            load_mnist(tmp_path, shard=shard)


def test_mnist_shard_reads_only_its_rows(tmp_path):
    """A plain file is read by range: a rank's peak memory is its shard, not the file."""
    import tracemalloc
    _write_mnist(tmp_path, n_train=4000, n_test=10)
    whole = 4000 * 784
    tracemalloc.start()
    try:
        (x, _), _ = load_mnist(tmp_path, normalize=False, shard=(3, 8))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert x.shape == (500, 784)
    assert peak < whole / 3, f"peak {peak} bytes for a {whole}-byte training set"


@pytest.mark.skipif(
    not FASHION_DIR.is_dir(),
    reason=f"{FASHION_DIR} absent (install the Debian package dataset-fashion-mnist)",
)
def test_fashion_mnist_shards():
    (x, t), _ = load_mnist(FASHION_DIR)
    (x1, t1), (xt, _) = load_mnist(FASHION_DIR, shard=(1, 3))
    assert x1.shape == (20000, 784) and xt.shape == (10000, 784)
    np.testing.assert_array_equal(x1, x[20000:40000])
    np.testing.assert_array_equal(t1, t[20000:40000])
