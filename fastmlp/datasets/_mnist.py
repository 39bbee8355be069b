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

from .._files import open_regular
from .._shard import check_shard, shard_bounds
from .._typing import Split
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


_CHUNK = 1 << 20
# deflate cannot expand data more than ~1032:1, so a gzip file that declares more
# decompressed data than this allows is truncated (checked before reading any of it)
_MAX_GZIP_RATIO = 1100


class _Idx:
    """An open IDX file (plain or gzip, detected by content) whose header has been read."""

    def __init__(self, file, magic, ndim):
        self.file = file
        self._raw = _open_regular(file)
        try:
            self._stream = self._raw
            size = os.fstat(self._raw.fileno()).st_size
            gz = self._raw.read(2) == b"\x1f\x8b"
            self._raw.seek(0)
            if gz:
                self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
            elif file.suffix == ".gz":
                raise ValueError(f"{file}: named .gz but is not gzip data")
            self.gz = gz
            kind = "images" if magic == _IMAGES_MAGIC else "labels"
            header_len = 4 * (1 + ndim)
            head = self._read(header_len)
            try:
                self._check_header(head, magic, kind, header_len)
            except ValueError:
                if gz:      # a corrupt stream can yield a few bad bytes first: name the real cause
                    self._read(_CHUNK)
                raise
            self.header_len, self.size = header_len, size
            self.shape = tuple(int(d) for d in np.frombuffer(head, dtype=">u4", offset=4))
            self.nbytes = math.prod(self.shape)
            # Bound the payload before reading it: a plain file must hold exactly the
            # declared bytes; a gzip stream cannot hold more than deflate's ratio allows.
            available = size - header_len if not gz else _MAX_GZIP_RATIO * size
            if self.nbytes > available:
                found_bytes = f"found {available}" if not gz else (
                    f"a {size}-byte gzip file cannot hold that much")
                raise ValueError(
                    f"{file}: truncated: header {self.shape} needs {self.nbytes} bytes of "
                    f"data, {found_bytes}"
                )
        except BaseException:
            self.close()
            raise

    def _check_header(self, head, magic, kind, header_len):
        file = self.file
        if len(head) < 4:
            raise ValueError(f"{file}: truncated header ({len(head)} bytes)")
        found = int.from_bytes(head[:4], "big")
        if found != magic:
            raise ValueError(
                f"{file}: bad magic number {found} (expected {magic} for an MNIST {kind} file)"
            )
        if len(head) < header_len:
            raise ValueError(
                f"{file}: truncated header ({len(head)} bytes, expected {header_len})"
            )

    def _read(self, n):
        """Up to ``n`` bytes (fewer only at the end of the data), read in bounded chunks."""
        buf = bytearray()
        try:
            while len(buf) < n:
                chunk = self._stream.read(min(_CHUNK, n - len(buf)))
                if not chunk:
                    break
                buf += chunk
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{self.file}: corrupt gzip data ({exc})") from None
        return buf

    def payload(self):
        """The uint8 data, shaped by the header; exactly the declared bytes, nothing after."""
        data = self._read(self.nbytes)
        if len(data) < self.nbytes:
            raise ValueError(
                f"{self.file}: truncated: header {self.shape} needs {self.nbytes} bytes of data, "
                f"found {len(data)}"
            )
        if self._read(1):
            raise ValueError(
                f"{self.file}: trailing bytes: header {self.shape} needs {self.nbytes} bytes of "
                f"data, the file holds more"
            )
        return np.frombuffer(data, dtype=np.uint8).reshape(self.shape)

    def payload_rows(self, start, stop):
        """Rows ``[start, stop)`` of the data, reading only those from a plain file (after
        checking its size is exactly the declared one), and streaming a gzip file through
        in bounded chunks (its length checked to the end)."""
        row = math.prod(self.shape[1:])
        if not self.gz:
            if self.size != self.header_len + self.nbytes:
                raise ValueError(
                    f"{self.file}: trailing bytes: header {self.shape} needs {self.nbytes} bytes "
                    f"of data, the file holds {self.size - self.header_len}")
            self._raw.seek(self.header_len + start * row)
            data = self._read((stop - start) * row)
        else:
            skipped = 0
            while skipped < start * row:   # decompress and drop the rows before, chunk by chunk
                chunk = self._read(min(_CHUNK, start * row - skipped))
                if not chunk:
                    break
                skipped += len(chunk)
            data = self._read((stop - start) * row)
            rest = 0
            while True:   # the rest, counted, not kept
                chunk = self._read(_CHUNK)
                if not chunk:
                    break
                rest += len(chunk)
            expected = self.nbytes - stop * row
            if rest != expected and len(data) == (stop - start) * row:
                what = "trailing bytes" if rest > expected else "truncated"
                raise ValueError(f"{self.file}: {what}: header {self.shape} needs {self.nbytes} "
                                 f"bytes of data, found {skipped + len(data) + rest}")
        if len(data) < (stop - start) * row:
            raise ValueError(f"{self.file}: truncated: header {self.shape} needs {self.nbytes} "
                             f"bytes of data")
        return np.frombuffer(data, dtype=np.uint8).reshape((stop - start,) + self.shape[1:])

    def close(self):
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.close()


def _open_regular(file):
    """``file`` opened for reading if it is a regular file (never blocks on a FIFO)."""
    try:
        return open_regular(file)
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from None


def _load_pair(directory, img_name, label_name, shard=None):
    """Images and labels; with ``shard = (rank, size)`` only that rank's rows
    (:func:`fastmlp._shard.shard_bounds` of the declared count), read by range."""
    img_file, label_file = _find(directory, img_name), _find(directory, label_name)
    images = _Idx(img_file, _IMAGES_MAGIC, 3)
    try:
        if images.shape[1:] != _SHAPE:
            raise ValueError(
                f"{img_file}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
            )
        labels = _Idx(label_file, _LABELS_MAGIC, 1)
        try:
            if shard is not None and images.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"{img_file} holds {images.shape[0]} images but {label_file} holds "
                    f"{labels.shape[0]} labels"
                )
            if shard is None:
                label_data, first = _payload(labels), 0
            else:
                first, stop = shard_bounds(labels.shape[0], *shard)
                label_data = labels.payload_rows(first, stop)
            if label_data.size and label_data.max() >= N_CLASSES:
                i = int(np.argmax(label_data >= N_CLASSES))
                raise ValueError(
                    f"{label_file}: label {label_data[i]} at index {first + i} is outside "
                    f"0..{N_CLASSES - 1}"
                )
        finally:
            labels.close()
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{img_file} holds {images.shape[0]} images but {label_file} holds "
                f"{label_data.shape[0]} labels"
            )
        if shard is None:
            image_data = _payload(images)
        else:
            image_data = images.payload_rows(*shard_bounds(images.shape[0], *shard))
    finally:
        images.close()
    return image_data, label_data


def _payload(idx):
    try:
        return idx.payload()
    except MemoryError:
        raise ValueError(f"{idx.file}: header {idx.shape} declares {idx.nbytes} bytes of data, "
                         f"more than fits in memory") from None


def load_mnist(path: str | os.PathLike, normalize: bool = True, flatten: bool = True,
               one_hot_label: bool = False,
               shard: tuple[int, int] | None = None) -> tuple[Split, Split]:
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
    shard : (int, int), optional
        ``(rank, size)``: return only rank ``rank``'s contiguous part of the
        *training* set, rows ``fastmlp._shard.shard_bounds(N, rank, size)``
        (sizes ``N // size`` or one more, the larger first), for data-parallel
        training (``shard=(comm.rank, comm.size)``). Only those rows are read
        from a plain file (by offset); a gzip file is decompressed through in
        1 MiB chunks, keeping only those rows. The test set is returned whole.
        Only the shard's labels are range-checked.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuple of ndarray
        Fresh, writable arrays; 60000 training and 10000 test samples for
        the standard files (with ``shard``, about 60000 / size training
        samples).

    Raises
    ------
    FileNotFoundError
        If ``path`` or one of the four files is missing (the message names
        the file and the directory).
    NotADirectoryError
        If ``path`` exists but is not a directory.
    TypeError, ValueError
        If ``shard`` is not a pair of ints with ``0 <= rank < size``.
    ValueError
        If a file is malformed: not a regular file, corrupt gzip data, wrong
        magic number, truncated header or payload, trailing bytes, images
        that are not 28x28, labels outside ``0..9``, image and label counts
        that differ, or data that does not fit in memory. The message names
        the file.

    Notes
    -----
    Each file is streamed, header first: the payload it then reads is bounded
    by the dimensions the header declares (checked against the file size for
    a plain file, and against deflate's maximum ratio for a gzip file, before
    any of it is read), so a small gzip file cannot expand into a large
    allocation, and the image and label counts are compared before the images
    are read.
    """
    shard = check_shard(shard)
    directory = Path(os.fspath(path)).expanduser()
    if not directory.exists():
        raise FileNotFoundError(f"MNIST directory '{directory}' does not exist")
    if not directory.is_dir():
        raise NotADirectoryError(f"MNIST path '{directory}' is not a directory")
    splits = []
    for img, label in (("train_img", "train_label"), ("test_img", "test_label")):
        pair = _load_pair(directory, _FILES[img], _FILES[label], shard if img == "train_img" else None)
        try:
            images, labels = pair
            splits.append(format_split(images, labels, normalize, flatten, one_hot_label, 255))
        except MemoryError:
            raise ValueError(
                f"{directory / _FILES[img]}: {pair[0].shape[0]} images do not fit in memory "
                f"once converted"
            ) from None
    return tuple(splits)


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
