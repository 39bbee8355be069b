"""Reader for the MNIST IDX files (also Fashion-MNIST, KMNIST: same format).

IDX layout (all integers big-endian): a 4-byte magic number
``0x0000 <type> <ndim>`` (type 0x08 = unsigned byte; 2051 for images with
3 dimensions, 2049 for labels with 1), then ``ndim`` uint32 sizes, then the
uint8 payload in C order.
"""
import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ._common import N_CLASSES, format_split

_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049
_SHAPE = (28, 28)
_FILES = {
    "train_img": "train-images-idx3-ubyte",
    "train_label": "train-labels-idx1-ubyte",
    "test_img": "t10k-images-idx3-ubyte",
    "test_label": "t10k-labels-idx1-ubyte",
}


def _candidates(name):
    """Accepted spellings: ``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte``, optionally ``.gz``."""
    dotted = name.replace("-idx", ".idx")
    return [name, name + ".gz", dotted, dotted + ".gz"]


def _find(directory, name):
    for candidate in _candidates(name):
        if (directory / candidate).is_file():
            return directory / candidate
    raise FileNotFoundError(
        f"MNIST file {name!r} not found in directory '{directory}' "
        f"(also looked for: {', '.join(_candidates(name)[1:])})"
    )


def _read_bytes(file):
    """Return the file's bytes, gunzipped if it is gzip data (detected by content)."""
    with open(file, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{file}: corrupt gzip data ({exc})") from exc
    elif file.suffix == ".gz":
        raise ValueError(f"{file}: named .gz but is not gzip data")
    return data


def _parse_idx(file, magic, ndim):
    """Read one IDX file and return its uint8 payload shaped by its header."""
    data = _read_bytes(file)
    kind = "images" if magic == _IMAGES_MAGIC else "labels"
    header_len = 4 * (1 + ndim)
    if len(data) < 4:
        raise ValueError(f"{file}: truncated header ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(
            f"{file}: bad magic number {found} (expected {magic} for an MNIST {kind} file)"
        )
    if len(data) < header_len:
        raise ValueError(
            f"{file}: truncated header ({len(data)} bytes, expected {header_len})"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape)
    payload = len(data) - header_len
    if payload != expected:
        what = "truncated" if payload < expected else "trailing bytes"
        raise ValueError(
            f"{file}: {what}: header {shape} needs {expected} bytes of data, found {payload}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(shape)


def _load_pair(directory, img_name, label_name):
    img_file, label_file = _find(directory, img_name), _find(directory, label_name)
    images = _parse_idx(img_file, _IMAGES_MAGIC, 3)
    if images.shape[1:] != _SHAPE:
        raise ValueError(
            f"{img_file}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    labels = _parse_idx(label_file, _LABELS_MAGIC, 1)
    if labels.size and labels.max() >= N_CLASSES:
        i = int(np.argmax(labels >= N_CLASSES))
        raise ValueError(
            f"{label_file}: label {labels[i]} at index {i} is outside 0..{N_CLASSES - 1}"
        )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{img_file} holds {images.shape[0]} images but {label_file} holds "
            f"{labels.shape[0]} labels"
        )
    return images, labels


def load_mnist(path, normalize=True, flatten=True, one_hot_label=False):
    """Load MNIST (or Fashion-MNIST) from the four IDX files in a directory.

    Parameters
    ----------
    path : str or os.PathLike
        Directory holding ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte``. Each may be gzipped (``.gz`` suffix) and
        may use the ``train-images.idx3-ubyte`` spelling.
    normalize : bool, default=True
        If True, pixels are float32 in ``[0, 1]`` (divided by 255), else the
        raw uint8 values.
    flatten : bool, default=True
        If True, images have shape ``(N, 784)``, else ``(N, 1, 28, 28)``.
    one_hot_label : bool, default=False
        If True, labels are float32 one-hot rows of shape ``(N, 10)``, else
        uint8 class indices of shape ``(N,)``.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuple of ndarray
        Fresh, writable arrays; 60000 training and 10000 test samples for
        the standard files.

    Raises
    ------
    FileNotFoundError
        If ``path`` or one of the four files is missing (the message names
        the file and the directory).
    NotADirectoryError
        If ``path`` exists but is not a directory.
    ValueError
        If a file is malformed: corrupt gzip data, wrong magic number,
        truncated header or payload, trailing bytes, images that are not
        28x28, labels outside ``0..9``, or image and label counts that
        differ. The message names the file.
    """
    directory = Path(os.fspath(path)).expanduser()
    if not directory.exists():
        raise FileNotFoundError(f"MNIST directory '{directory}' does not exist")
    if not directory.is_dir():
        raise NotADirectoryError(f"MNIST path '{directory}' is not a directory")
    train = _load_pair(directory, _FILES["train_img"], _FILES["train_label"])
    test = _load_pair(directory, _FILES["test_img"], _FILES["test_label"])
    return (
        format_split(*train, normalize, flatten, one_hot_label, 255),
        format_split(*test, normalize, flatten, one_hot_label, 255),
    )


def _write_idx(file, array, compress=None):
    """Write a uint8 array as an IDX file (for tests and fixtures).

    Parameters
    ----------
    file : str or os.PathLike
        Destination. Gzipped if ``compress`` is True, or if it is None and
        the name ends in ``.gz``.
    array : array_like of uint8, shape (N,) or (N, rows, cols)
        Labels (written with magic 2049) or images (magic 2051).
    compress : bool or None, default=None
        Whether to gzip the output.
    """
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = (0x0800 + array.ndim).to_bytes(4, "big") + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.tobytes()
    file = Path(file)
    if compress or (compress is None and file.suffix == ".gz"):
        data = gzip.compress(data, mtime=0)
    file.write_bytes(data)
