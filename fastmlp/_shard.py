"""Training sets split over data-parallel ranks, one contiguous shard per rank.

The contract between the loaders and a data-parallel trainer:

- ``shard_bounds(n, rank, size)`` is the one rule that cuts ``n`` samples into
  ``size`` contiguous shards: rank ``r`` holds rows ``[start, stop)``, the first
  ``n % size`` ranks one row more than the others (so the sizes differ by at most
  one and every row belongs to exactly one rank). ``load_mnist(..., shard=(r, k))``
  and ``load_digits(..., shard=(r, k))`` return exactly those rows of the training set.
- A trainer that receives shards learns the layout by all-gathering the shard
  lengths (``ShardLayout(comm.allgather(len(x_local)), comm.rank)``); nothing else
  is exchanged. Shards may then be of any lengths (also ones not made by
  ``shard_bounds``, also empty), provided they are in rank order: global index
  ``i`` is row ``i - offsets[r]`` of the rank ``r`` with
  ``offsets[r] <= i < offsets[r + 1]``.
- Every rank draws the same permutation of the *global* index space from the
  shared seed (:class:`ShardedStream`, the same draws as the single-process
  ``ShuffledStream``), cuts the same global mini-batches from it, and computes on
  the members of each batch it holds. So each sample is used once per pass, no
  sample is dropped or seen twice, and K ranks see the same global batches as
  one process with the whole training set and the same seed.
- A rank may hold none of a batch's members (``Batch.weight == 0``); it must still
  join the batch's all-reduce with a zero gradient. The global batch gradient is
  ``sum over ranks of (local mean gradient * local count) / batch_size``.
"""
import numbers

import numpy as np

from ._loop import Batch, ShuffledStream

__all__ = ["ShardLayout", "ShardedStream", "check_shard", "shard_bounds"]


def check_shard(shard):
    """``shard`` as ``(rank, size)`` ints with ``0 <= rank < size``; None stays None.

    Raises
    ------
    TypeError, ValueError
        Naming ``shard``, for anything but a pair of ints in range.
    """
    if shard is None:
        return None
    try:
        rank, size = shard
    except (TypeError, ValueError):
        raise TypeError(f"shard must be a (rank, size) pair of ints, got {shard!r}") from None
    for value in (rank, size):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"shard must be a (rank, size) pair of ints, got {shard!r}")
    rank, size = int(rank), int(size)
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got shard={shard!r}")
    if not 0 <= rank < size:
        raise ValueError(f"shard rank must be in [0, {size}), got shard={shard!r}")
    return rank, size


def shard_bounds(n, rank, size):
    """Rows ``[start, stop)`` of ``n`` samples that rank ``rank`` of ``size`` holds.

    Contiguous, in rank order, sizes ``n // size`` or ``n // size + 1`` (the larger
    ones first); a rank may hold no rows when ``n < size``.

    Examples
    --------
    >>> [shard_bounds(10, r, 3) for r in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    rank, size = check_shard((rank, size))
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    q, r = divmod(int(n), size)
    start = rank * q + min(rank, r)
    return start, start + q + (rank < r)


class ShardLayout:
    """Where the global index space lives: ``counts[r]`` rows on rank ``r``, in rank order.

    Parameters
    ----------
    counts : sequence of int
        Every rank's shard length (``comm.allgather(len(x_local))``).
    rank : int
        This rank.

    Attributes
    ----------
    total : int
        Global number of training samples.
    start, stop : int
        This rank's global rows ``[start, stop)``.
    """

    def __init__(self, counts, rank):
        counts = np.asarray(counts)
        if counts.ndim != 1 or counts.size == 0 or counts.dtype.kind not in "iu" \
                or (counts < 0).any():
            raise ValueError(f"counts must be a non-empty list of non-negative ints, got {counts!r}")
        rank, size = check_shard((rank, counts.size))
        self.counts = counts.astype(np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(self.counts)))
        self.rank, self.size = rank, size
        self.total = int(self.offsets[-1])
        self.start, self.stop = int(self.offsets[rank]), int(self.offsets[rank + 1])

    def select(self, global_idx):
        """This rank's members of ``global_idx``: their local row numbers, in batch order."""
        global_idx = np.asarray(global_idx)
        mine = (global_idx >= self.start) & (global_idx < self.stop)
        return global_idx[mine] - self.start


class ShardedStream(ShuffledStream):
    """``ShuffledStream`` over a sharded training set: the same global permutations and
    global mini-batches on every rank, each rank returning the members it holds.

    ``draw(critical)`` returns a :class:`fastmlp._loop.Batch` of this rank's rows of the
    next global batch (possibly none) whose ``weight`` is their count (``batch_size`` is
    the divisor of the summed gradient). ``commit()`` as in
    ``ShuffledStream``: a step that is interrupted or diverges retries the same batch.
    ``perm``/``pos``/``rng`` are the position (what a checkpoint saves), identical on
    every rank.
    """

    def __init__(self, x, t, layout, batch_size, rng, dtype):
        if x.shape[0] != layout.stop - layout.start or t.shape[0] != x.shape[0]:
            raise ValueError(f"this rank holds {x.shape[0]} samples but the layout gives it "
                             f"{layout.stop - layout.start}")
        if not 1 <= batch_size <= layout.total:
            raise ValueError(f"batch_size ({batch_size}) must be in [1, {layout.total}] "
                             f"(the global number of training samples)")
        super().__init__(x[:0], t[:0], batch_size, rng, dtype, rows=(0, 0))   # no buffers
        self.x, self.t, self.layout, self.dtype = x, t, layout, dtype
        self.perm = np.arange(layout.total)   # the global index space
        self.pos = layout.total               # used up: the first batch shuffles

    def draw(self, critical):
        rows = self.layout.select(self._walk(critical))   # the same draws as one process
        x = np.asarray(self.x[rows], dtype=self.dtype)     # a small gather per step
        return Batch(x, self.t[rows], None, float(rows.size), False)
