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
from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import threads as _threads
from ._fused import gradient_layout, packed_views
from ._loop import ShuffledStream, step
from ._networks import MultiLayerNet
from ._random import generator
from ._shard import ShardedStream, ShardLayout, shard_bounds
from ._shared_sum import SharedSum, lend, shared_memory_wanted
from ._typing import Seed, SupportsUpdate
from .trainer import Trainer

__all__ = ["DataParallelTrainer", "shard_bounds", "set_rank_threads"]

_MPI_MISSING = ('fastmlp.distributed needs mpi4py and an MPI library: pip install '
                '"fastmlp[mpi]" (mpi4py and MPICH), or mpi4py built against your system MPI')


def import_mpi(message: str = _MPI_MISSING) -> Any:
    """mpi4py's MPI module (imported here, not with fastmlp: it initialises MPI); without
    it an ImportError saying ``message`` (which names the extra)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(message) from exc
    return MPI


def set_rank_threads(comm: Any = None) -> int:
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
    MPI = import_mpi()
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


def check_same_parameters(comm: Any, params: Mapping[str, np.ndarray],
                          when: str = "now") -> None:
    """Raise RuntimeError on every rank unless all ranks of ``comm`` hold bitwise the same
    ``params`` (a dict of arrays): one CRC-32 per rank (a pass over memory), all-gathered."""
    crc = 0
    for a in params.values():
        crc = zlib.crc32(np.ascontiguousarray(a).view(np.uint8).data, crc)
    crcs = comm.allgather(crc)
    if len(set(crcs)) != 1:
        raise RuntimeError(f"the ranks' parameters differ {when} (CRC-32 per rank: {crcs})")


class NoRows:
    """The network of a step in which this rank holds no rows of the batch: zero gradients
    and zero loss, so that it still joins the step's all-reduce and applies its update."""

    def __init__(self, params: dict[str, np.ndarray], reducer: PackedAllReduce) -> None:
        self.params, self._reducer, self.last_loss = params, reducer, 0.0

    def gradient(self, x: ArrayLike, t: ArrayLike, sample_weight: ArrayLike | None = None, *,
                 weight_decay: float | None = None) -> dict[str, np.ndarray]:
        return self._reducer.zero_gradients()


class PackedAllReduce:
    """The step's one gradient sum over the ranks: a network's gradients, each rank's
    weighted by its share of the batch, packed in one buffer (the layout of
    :func:`fastmlp._fused.gradient_layout`) with a few scalars (losses) in its last line.

    When all ranks share one node, the buffer is this rank's row of a shared-memory window
    (:class:`fastmlp._shared_sum.SharedSum`) and the fused workspace writes its gradients
    straight into it; otherwise it is summed with one in-place ``Allreduce``. Either way
    the fused gradients need no packing copy; the layer path's are copied in.
    ``shared_memory``: None (the default) picks the window when possible (set
    ``FASTMLP_MPI_SHARED_MEMORY=0`` to force ``Allreduce``). ``seconds`` totals the time
    spent summing.
    """

    def __init__(self, comm, network, shared_memory=None):
        self.MPI, self.comm = import_mpi(), comm
        sizes = [network.input_size, *network.hidden_size_list, network.output_size]
        dtype = network.params["W1"].dtype
        shapes, offsets, length = gradient_layout(sizes, dtype)
        if shared_memory is None:
            shared_memory = shared_memory_wanted(comm, self.MPI)
        self._shared = SharedSum.get(comm, self.MPI, length, dtype) if shared_memory else None
        self._packed = self._shared.own if shared_memory else np.zeros(length, dtype)
        self._views = dict(zip(network.params, packed_views(self._packed, shapes, offsets)))
        self._extra = self._packed[-(64 // self._packed.itemsize):]
        fused = getattr(network, "_fused", None)
        if shared_memory and fused is not None:
            lend(fused, self._packed, self.MPI)   # its next workspace computes in place
        self.seconds = 0.0

    def zero_gradients(self) -> dict[str, np.ndarray]:
        """The packed buffer's gradient views, zeroed (a rank without rows)."""
        self._packed.fill(0)
        return dict(self._views)

    def __call__(self, network: MultiLayerNet, grads: dict[str, np.ndarray], scale: float,
                 scalars: tuple[float, ...]) -> list[float]:
        """Sum ``scale * grads`` and ``scale * scalars`` over the ranks; the sums are left in
        ``grads`` (its entries may become the packed buffer's views); returns the scalars'."""
        ws = getattr(getattr(network, "_fused", None), "workspace", None)
        packed = None
        if ws is not None and len(grads) == len(ws.grads) \
                and all(grads.get(k) is g for k, g in ws.grads):
            packed, extra = ws.packed, ws.extra          # the gradients are its views
        if packed is None or (self._shared is not None and packed is not self._packed):
            packed, extra = self._packed, self._extra    # one copy in
            for k, view in self._views.items():
                if grads[k] is not view:
                    np.copyto(view, grads[k])
            grads.update(self._views)
        MPI = self.MPI
        start = MPI.Wtime()
        if self._shared is not None:
            extra[:len(scalars)] = scalars
            self._shared(scale)
        else:
            if scale != 1.0:
                packed *= scale
            for i, value in enumerate(scalars):
                extra[i] = scale * value
            self.comm.Allreduce(MPI.IN_PLACE, packed, op=MPI.SUM)
        self.seconds += MPI.Wtime() - start
        return [float(v) for v in extra[:len(scalars)]]


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

    The batches are the Trainer's ``sampling='epoch'`` ones (each sample once per
    epoch, agreed by all ranks from the seed).
    seed : None, int, numpy.random.Generator or RandomState
        Rank 0's seed is used by all (None: rank 0 draws an int from numpy's global
        random state; a Generator or RandomState: from it).
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

    Attributes
    ----------
    comm, rank, size : the communicator, this rank and the number of ranks (beyond the
        Trainer's attributes)
    shard : (lo, hi), this rank's rows of every global batch (None with ``sharded``)
    blas_threads : int, numpy's BLAS threads on this rank
    allreduce_seconds : float, total time in the gradient all-reduce
    """

    def __init__(self, network: MultiLayerNet, x_train: ArrayLike, t_train: ArrayLike,
                 x_test: ArrayLike, t_test: ArrayLike, epochs: int = 20,
                 mini_batch_size: int = 100, optimizer: str | SupportsUpdate = "SGD",
                 optimizer_param: Mapping[str, Any] | None = None,
                 evaluate_sample_num_per_epoch: int | None = None, verbose: bool = True,
                 lr_decay: float | None = None, seed: Seed = None, *, comm: Any = None,
                 set_threads: bool = True, sharded: bool = False) -> None:
        MPI = import_mpi()
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
        if self.rank == 0 and (seed is None or isinstance(seed, (np.random.Generator,
                                                                 np.random.RandomState))):
            # None (numpy's global state on rank 0), a Generator or a RandomState: one int
            seed = int(generator(seed).integers(2**63))
        seed = comm.bcast(seed if self.rank == 0 else None, root=0)
        self.layout = (ShardLayout(comm.allgather(len(x_train)),  # type: ignore[arg-type]
                                   self.rank) if sharded else None)
        self.shard: tuple[int, int] | None = None   # whole data: this rank's rows of each batch
        if not sharded and isinstance(mini_batch_size, (int, np.integer)):
            self.shard = shard_bounds(int(mini_batch_size), self.rank, self.size)
        super().__init__(network, x_train, t_train, x_test, t_test, epochs=epochs,
                         mini_batch_size=mini_batch_size, optimizer=optimizer,
                         optimizer_param=optimizer_param,
                         evaluate_sample_num_per_epoch=evaluate_sample_num_per_epoch,
                         verbose=verbose if self.rank == 0 else False, lr_decay=lr_decay, seed=seed,
                         sampling="epoch")
        self._agree()
        for name in self.network.params:   # in place: the layers hold the same arrays
            comm.Bcast(self.network.params[name], root=0)
        self.check_parameters("after the broadcast from rank 0")
        self._reducer = PackedAllReduce(comm, self.network)
        self._no_rows = NoRows(self.network.params, self._reducer)

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

    def check_parameters(self, when: str = "now") -> None:
        """Raise RuntimeError on every rank unless all ranks hold bitwise the same
        parameters (a CRC-32 per rank, all-gathered)."""
        check_same_parameters(self.comm, self.network.params, when)

    @property
    def allreduce_seconds(self) -> float:
        """Total time spent in the gradient all-reduce."""
        return self._reducer.seconds

    # ------------------------------------------------------------------ the step

    def _take_step(self, x, t, sample_weight, weight_decay):
        """:func:`fastmlp._loop.step` with the all-reduce as its gradient hook; returns the
        global batch's loss (every rank joins the all-reduce, whatever its own loss)."""
        self._weight = x.shape[0] / self.batch_size   # this rank's share of the batch
        # a rank holding none of this batch's samples (shards) joins with zeros
        network = self.network if x.shape[0] else self._no_rows
        return step(network, self.optimizer, x, t, sample_weight, weight_decay,
                    gradient_hook=self._all_reduce)

    def _all_reduce(self, grads, loss):
        """The gradient hook: this rank's share of the global gradient and loss, summed over
        the ranks (one Allreduce); returns the global loss."""
        return self._reducer(self.network, grads, self._weight, (loss,))[0]

    # ------------------------------------------------------------------ reporting

    def _train_accuracy(self, k):
        if self.layout is None:
            return super()._train_accuracy(k)
        # the first k (or all) samples of the global set, a prefix of each rank's shard
        n = self.train_size if k is None else min(k, self.train_size)   # as x_train[:k]
        m = max(0, min(n, self.layout.stop) - self.layout.start)
        return self._correct(self.x_train[:m], self.t_train[:m]) / n

    def _accuracy(self, x, t):
        """Accuracy over ``x`` (whole on every rank): each rank counts its share of the rows."""
        lo, hi = shard_bounds(x.shape[0], self.rank, self.size)
        return self._correct(x[lo:hi], t[lo:hi]) / x.shape[0]

    def _correct(self, x, t):
        """Correct predictions on this rank's rows ``x``, summed over the ranks (exact
        integers: every rank gets the same)."""
        count = np.zeros(1, np.int64)
        if x.shape[0]:
            count[0] = round(Trainer._accuracy(self, x, t) * x.shape[0])
        self.comm.Allreduce(self._MPI.IN_PLACE, count, op=self._MPI.SUM)
        return int(count[0])

    def end_epoch(self, critical: Any) -> None:
        super().end_epoch(critical)
        self.check_parameters(f"at the end of epoch {self.current_epoch}")
