"""Synchronous data-parallel training on MPI (mpi4py): one more front door on the one loop.

Every rank (process) holds the whole network and the same data. Each step, every rank
draws the same global mini-batch from the same seeded shuffled stream, computes the
gradient of its contiguous share of the batch rows, and one in-place ``Allreduce`` sums
the shares (each weighted by ``share / batch``, so the sum is the global batch's mean
gradient, weight decay included) together with the step's loss; every rank then applies
the same update. It is the loop's gradient hook (:func:`fastmlp._loop.step`), between the
gradient and the update: the training loop is the :class:`~fastmlp.Trainer`'s own.

Run a script under ``mpiexec`` and ``python -m mpi4py``, which aborts the whole job
when a rank raises (plain ``python`` leaves the other ranks waiting in a collective)::

    mpiexec -n 4 python -m mpi4py train.py

Needs ``pip install "fastmlp[mpi]"`` (mpi4py and MPICH's wheel) or mpi4py built
against a system MPI; ``import fastmlp`` works without them.
"""
import math
import os
import zlib

import numpy as np

from . import threads as _threads
from ._fused import gradient_layout, packed_views
from ._loop import ShuffledStream, step
from ._shard import ShardedStream, ShardLayout, shard_bounds
from ._networks import MultiLayerNet
from .trainer import Trainer

__all__ = ["DataParallelTrainer", "shard_bounds", "set_rank_threads"]

_MPI_MISSING = ('fastmlp.distributed needs mpi4py and an MPI library: pip install '
                '"fastmlp[mpi]" (mpi4py and MPICH), or mpi4py built against your system MPI')


def _mpi():
    """mpi4py's MPI module (imported here, not with fastmlp: it initialises MPI)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(_MPI_MISSING) from exc
    return MPI


def set_rank_threads(comm=None):
    """Give this rank its share of the cores it shares with ranks on the same machine.

    The ranks of ``comm`` on this node (``comm.Split_type(MPI.COMM_TYPE_SHARED)``) that may
    run on any of this rank's cores (``os.sched_getaffinity``) share them: each gets
    ``cores // sharing`` BLAS threads (:func:`fastmlp.threads.set_threads_for_processes`;
    ranks bound to their own cores keep them all). A ``RuntimeWarning`` (from the node's
    first rank) when the ranks oversubscribe the cores. Collective over ``comm``.

    Returns
    -------
    int
        The thread count this rank now uses.
    """
    MPI = _mpi()
    comm = MPI.COMM_WORLD if comm is None else comm
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        mine = (set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                else set(range(os.cpu_count() or 1)))
        everyone = node.allgather(sorted(mine))
        sharing = sum(1 for cores in everyone if mine.intersection(cores))
        return _threads.set_threads_for_processes(sharing, warn=node.Get_rank() == 0)
    finally:
        node.Free()


def _checksum(arrays):
    """CRC-32 of the arrays' bytes, in order (cheap: a pass over memory)."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).view(np.uint8), crc)
    return crc


class DataParallelTrainer(Trainer):
    """The :class:`~fastmlp.Trainer` over the ranks of an MPI communicator.

    Parameters
    ----------
    network, x_train, t_train, x_test, t_test, epochs, optimizer, optimizer_param,
    evaluate_sample_num_per_epoch, lr_decay
        As :class:`~fastmlp.Trainer`, the same on every rank. ``network`` is a fastmlp
        ``MultiLayerNet``/``TwoLayerNet`` (compiled or ``fastmlp.reference``); its
        parameters are broadcast from rank 0.
    mini_batch_size : int, default 100
        The **global** batch: each step the ranks together train on this many samples,
        each on a contiguous share (:func:`shard_bounds`; at least one sample per rank).
    verbose : bool, default True
        Printing and the progress bar on rank 0 only.
    seed : None, int or numpy.random.Generator
        Rank 0's seed is used by all (None or a Generator: rank 0 draws an int from it).
    comm : mpi4py.MPI.Comm, optional
        Default ``MPI.COMM_WORLD``.
    sharded : bool, default False
        ``x_train``/``t_train`` are this rank's shard of the training set (rows in rank
        order, e.g. ``load_mnist(path, shard=(rank, size))``), not the whole set: every
        rank draws the same global batches over the global index space
        (:class:`fastmlp._shard.ShardedStream`) and computes on the members it holds,
        weighted by their count; the training accuracy is all-reduced over the shards.
    set_threads : bool, default True
        Give each rank its share of the machine's cores for numpy's BLAS
        (:func:`set_rank_threads`), unless ``fastmlp.threads.set_num_threads`` was called.

    Every rank ends with the same parameters, optimizer state, ``train_loss_list`` (the
    global batch's loss, all-reduced), accuracies (each rank measures its share of the
    rows; the correct counts are all-reduced) and ``final_test_acc``. A loss that is not
    finite on any rank raises :class:`~fastmlp.DivergenceError` on all, nothing applied.

    Attributes (beyond the Trainer's)
    ---------------------------------
    comm, rank, size : the communicator, this rank and the number of ranks
    shard : (lo, hi), this rank's rows of every global batch
    blas_threads : int, numpy's BLAS threads on this rank
    allreduce_seconds : float, total time in the gradient all-reduce
    """

    def __init__(self, network, x_train, t_train, x_test, t_test, epochs=20, mini_batch_size=100,
                 optimizer="SGD", optimizer_param=None, evaluate_sample_num_per_epoch=None,
                 verbose=True, lr_decay=None, seed=None, *, comm=None, set_threads=True,
                 sharded=False):
        MPI = _mpi()
        self._MPI = MPI
        comm = MPI.COMM_WORLD if comm is None else comm
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        if not isinstance(network, MultiLayerNet):
            raise TypeError("network must be a fastmlp MultiLayerNet or TwoLayerNet (compiled or "
                            f"fastmlp.reference), got {type(network).__name__}")
        if isinstance(mini_batch_size, (int, np.integer)) and 0 < mini_batch_size < self.size:
            raise ValueError(f"mini_batch_size ({mini_batch_size}) is the global batch: it must "
                             f"be at least the number of ranks ({self.size})")
        self.blas_threads = set_rank_threads(comm) if set_threads else None
        if self.rank == 0 and (seed is None or isinstance(seed, np.random.Generator)):
            seed = int(np.random.default_rng(seed).integers(2**63))
        seed = comm.bcast(seed if self.rank == 0 else None, root=0)
        self.layout = (ShardLayout(comm.allgather(len(x_train)), self.rank) if sharded
                       else None)
        self.shard = (0, 0)   # set once the batch size is checked
        if isinstance(mini_batch_size, (int, np.integer)):
            self.shard = shard_bounds(int(mini_batch_size), self.rank, self.size)
        super().__init__(network, x_train, t_train, x_test, t_test, epochs=epochs,
                         mini_batch_size=mini_batch_size, optimizer=optimizer,
                         optimizer_param=optimizer_param,
                         evaluate_sample_num_per_epoch=evaluate_sample_num_per_epoch,
                         verbose=verbose if self.rank == 0 else False, lr_decay=lr_decay, seed=seed)
        self._agree()
        for name in self.network.params:   # in place: the layers hold the same arrays
            comm.Bcast(self.network.params[name], root=0)
        self.check_parameters("after the broadcast from rank 0")
        sizes = [network.input_size, *network.hidden_size_list, network.output_size]
        shapes, offsets, length = gradient_layout(sizes, self.dtype)
        self._packed = np.zeros(length, self.dtype)   # the layer path's packed gradients
        self._views = dict(zip(self.network.params, packed_views(self._packed, shapes, offsets)))
        self._extra = self._packed[-(64 // self._packed.itemsize):]
        self.allreduce_seconds = 0.0

    def _make_stream(self, x_train, t_train, batch_size, rng, dtype):
        if self.layout is not None:
            return ShardedStream(x_train, t_train, self.layout, batch_size, rng, dtype)
        return ShuffledStream(x_train, t_train, batch_size, rng, dtype, rows=self.shard)

    def _global_train_size(self, n):
        return n if self.layout is None else self.layout.total

    def _agree(self):
        """Raise on every rank unless all ranks train the same way on the same shapes."""
        net = self.network
        mine = (type(net).__name__, np.dtype(self.dtype).str,
                [(k, v.shape) for k, v in net.params.items()],
                self.train_size if self.layout is not None else self.x_train.shape,
                self.x_test.shape, self.batch_size, self.epochs, type(self.optimizer).__name__,
                getattr(self.optimizer, "lr", None), self.lr_decay, self.iter_per_epoch)
        everyone = self.comm.allgather(mine)
        differ = [r for r, theirs in enumerate(everyone) if theirs != everyone[0]]
        if differ:
            raise ValueError(f"ranks {differ} differ from rank 0 in network, data shapes or "
                             f"training settings: {everyone[differ[0]]} vs {everyone[0]}")

    def check_parameters(self, when="now"):
        """Raise RuntimeError on every rank unless all ranks hold bitwise the same
        parameters (a CRC-32 per rank, all-gathered)."""
        crcs = self.comm.allgather(_checksum(self.network.params.values()))
        if len(set(crcs)) != 1:
            raise RuntimeError(f"the ranks' parameters differ {when} (CRC-32 per rank: {crcs})")

    # ------------------------------------------------------------------ the step

    def _take_step(self, x, t, sample_weight, weight_decay):
        """:func:`fastmlp._loop.step` with the all-reduce as its gradient hook; returns the
        global batch's loss (every rank joins the all-reduce, whatever its own loss)."""
        self._weight = x.shape[0] / self.batch_size   # this rank's share of the batch
        if x.shape[0] == 0:   # none of this batch's samples is on this rank (shards)
            return self._join_empty()
        return step(self.network, self.optimizer, x, t, sample_weight, weight_decay,
                    gradient_hook=self._all_reduce)

    def _join_empty(self):
        """A rank holding none of the batch: zeros into the all-reduce, then the update every
        rank applies (the summed gradients, in the layer path's packed buffer)."""
        self._packed.fill(0)
        self._reduce(self._packed)
        loss = float(self._extra[0])
        if math.isfinite(loss):
            self.optimizer.update(self.network.params, dict(self._views))
        return loss

    def _all_reduce(self, grads, loss):
        """The gradient hook: weight this rank's gradients and loss, sum them over the ranks
        in one in-place Allreduce of one packed buffer, leave the sums in ``grads``; return
        the global loss."""
        ws = getattr(getattr(self.network, "_fused", None), "workspace", None)
        if ws is not None and len(grads) == len(ws.grads) \
                and all(grads.get(k) is g for k, g in ws.grads):
            packed, extra = ws.packed, ws.extra          # the gradients are its views already
        else:
            packed, extra = self._packed, self._extra    # the layer path: one copy in
            for k, view in self._views.items():
                np.copyto(view, grads[k])
            grads.update(self._views)
        if self._weight != 1.0:
            packed *= self._weight
        extra[0] = self._weight * loss
        self._reduce(packed)
        return float(extra[0])

    def _reduce(self, packed):
        start = self._MPI.Wtime()
        self.comm.Allreduce(self._MPI.IN_PLACE, packed, op=self._MPI.SUM)
        self.allreduce_seconds += self._MPI.Wtime() - start

    # ------------------------------------------------------------------ reporting

    def _train_accuracy(self, k):
        if self.layout is None:
            return super()._train_accuracy(k)
        # the first k (or all) samples of the global set: each rank counts its own
        n = self.train_size if k is None else min(k, self.train_size)   # as x_train[:k]
        rows = self.layout.select(np.arange(n))
        count = np.zeros(1, np.int64)
        if rows.size:
            x, t = self.x_train[rows], self.t_train[rows]
            count[0] = round(Trainer._accuracy(self, x, t) * rows.size)
        self.comm.Allreduce(self._MPI.IN_PLACE, count, op=self._MPI.SUM)
        return int(count[0]) / n

    def _accuracy(self, x, t):
        """Accuracy over ``x``: each rank counts the correct predictions of its share of the
        rows, and the counts are all-reduced (exact integers: every rank gets the same)."""
        n = x.shape[0]
        lo, hi = shard_bounds(n, self.rank, self.size)
        count = np.zeros(1, np.int64)
        if hi > lo:
            count[0] = round(super()._accuracy(x[lo:hi], t[lo:hi]) * (hi - lo))
        self.comm.Allreduce(self._MPI.IN_PLACE, count, op=self._MPI.SUM)
        return int(count[0]) / n

    def end_epoch(self, critical):
        super().end_epoch(critical)
        self.check_parameters(f"at the end of epoch {self.current_epoch}")
