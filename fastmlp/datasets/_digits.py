"""The UCI 8x8 handwritten digits, shipped with fastmlp.

Source: E. Alpaydin and C. Kaynak, "Optical Recognition of Handwritten
Digits", UCI Machine Learning Repository, 1998, doi:10.24432/C50P49,
licensed CC BY 4.0. These are the 1797 samples of its test part
(``optdigits.tes``), the same samples as ``sklearn.datasets.load_digits``.
Each image is a 32x32 bitmap reduced to 8x8 blocks counting set pixels, so
values are integers in ``[0, 16]``.

``data/digits.npz`` was written once with::

    d = sklearn.datasets.load_digits()
    np.savez_compressed("digits.npz", images=d.images.astype(np.uint8),
                        target=d.target.astype(np.uint8))
"""
from importlib.resources import files

import numpy as np

from .._shard import check_shard, shard_bounds
from .._typing import Split
from ._common import N_CLASSES, format_split


def _read_shipped():
    with files(__package__).joinpath("data/digits.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as npz:
            images, target = npz["images"], npz["target"]
    if images.shape != (1797, 8, 8) or target.shape != (1797,):
        raise RuntimeError("fastmlp's shipped digits.npz is damaged; reinstall fastmlp")
    return images, target


def _split_indices(target, test_fraction):
    """Fixed stratified split: evenly spaced test samples within each class."""
    is_test = np.zeros(target.shape[0], dtype=bool)
    for c in range(N_CLASSES):
        idx = np.flatnonzero(target == c)
        n_test = min(max(round(idx.size * test_fraction), 1), idx.size - 1)
        is_test[idx[((np.arange(n_test) + 0.5) * idx.size / n_test).astype(np.intp)]] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def load_digits(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False,
                test_fraction: float = 0.2,
                shard: tuple[int, int] | None = None) -> tuple[Split, Split]:
    """Load the 8x8 handwritten digits (1797 samples, 10 classes).

    The data ships with fastmlp, so no download is needed. The train/test
    split is fixed: within each class, ``round(test_fraction * n_class)``
    evenly spaced samples go to the test set. It is the same on every call and
    does not use any random state. Samples keep their original order.

    Parameters
    ----------
    normalize : bool, default=True
        If True, pixels are float32 scaled to ``[0, 1]`` (divided by 16).
        If False, they are the raw uint8 counts in ``[0, 16]``, as the book's
        ``load_mnist`` returns raw uint8 pixels.
    flatten : bool, default=True
        If True, images have shape ``(N, 64)``, else ``(N, 1, 8, 8)``.
    one_hot_label : bool, default=False
        If True, labels are float32 one-hot rows of shape ``(N, 10)``,
        else uint8 class indices of shape ``(N,)``.
    test_fraction : float, default=0.2
        Fraction of each class held out for the test set, in ``(0, 1)``.
        Every class keeps at least one sample on each side.
    shard : (int, int), optional
        ``(rank, size)``: return only rank ``rank``'s contiguous part of the
        training set, rows ``fastmlp._shard.shard_bounds(N, rank, size)`` of
        it (as ``load_mnist``); the test set is returned whole.

    Returns
    -------
    (x_train, t_train), (x_test, t_test) : tuple of tuple of ndarray
        With the default ``test_fraction`` there are 1438 training and 359
        test samples.

    Raises
    ------
    TypeError, ValueError
        If ``test_fraction`` is not a number strictly between 0 and 1, or
        ``shard`` is not ``(rank, size)`` with ``0 <= rank < size``.
    """
    shard = check_shard(shard)
    try:
        ok = 0.0 < float(test_fraction) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(test_fraction, bool):
        raise ValueError(
            f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}"
        )
    images, target = _read_shipped()
    train, test = _split_indices(target, float(test_fraction))
    if shard is not None:
        start, stop = shard_bounds(train.size, *shard)
        train = train[start:stop]
    return (
        format_split(images[train], target[train], normalize, flatten, one_hot_label, 16),
        format_split(images[test], target[test], normalize, flatten, one_hot_label, 16),
    )
