"""A node's ranks summing their packed gradients through one MPI shared-memory window.

When every rank of a communicator runs on one machine, MPI's ``Allreduce`` copies each
rank's buffer into MPI's own shared memory, reduces there and copies the result back.
Here the ranks' gradient buffers *are* rows of one shared window (the fused workspace
writes its gradients straight into its row), and each rank sums one slice of the
columns over all rows, scaled by each rank's share of the batch, and writes the sum back
into every row: one read of each input and one write of each output
(``bench/bench_distributed.py`` measures both; README's "Distributed training" has the
figures).
"""
import os
import weakref

import numpy as np

from . import _backend

__all__ = ["SharedSum", "lend", "shared_memory_wanted"]

_ALIGN = 64   # bytes: the rows and the scale slots start on a cache line


def shared_memory_wanted(comm, MPI):
    """True when all ranks of ``comm`` share one node (and ``FASTMLP_MPI_SHARED_MEMORY``
    is not ``0``): then :class:`SharedSum` can replace ``Allreduce``. Collective."""
    if comm.Get_size() < 2 or os.environ.get("FASTMLP_MPI_SHARED_MEMORY", "1") == "0":
        return False
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        return comm.allreduce(node.Get_size(), op=MPI.MIN) == comm.Get_size()
    finally:
        node.Free()


_made: "list[SharedSum]" = []   # every SharedSum made in this process (reused: windows are never freed)
_lent: weakref.WeakSet = weakref.WeakSet()   # the fused paths computing in a window (see lend)


def lend(fused, row, MPI):
    """Let ``fused`` (a network's :class:`fastmlp._fused.FusedMLP`) compute its gradients
    in ``row`` of a window, until MPI finalises: then it drops the row and any workspace
    (an MPI may unmap its windows at ``MPI_Finalize``; the network keeps working, on
    memory of its own)."""
    if not _lent and not _finalize_hook:
        keyval = MPI.Comm.Create_keyval(delete_fn=_at_finalize)   # the standard's hook:
        MPI.COMM_SELF.Set_attr(keyval, True)   # COMM_SELF's attributes go first in Finalize
        _finalize_hook.append(keyval)
    for other in list(_lent):   # a row is lent to one network at a time (windows are reused)
        if other is not fused and other.gradient_buffer is row:
            other.gradient_buffer = None
            if other.workspace is not None and other.workspace.packed is row:
                other.workspace = None
    fused.gradient_buffer = row
    _lent.add(fused)


_finalize_hook: list = []   # the MPI keyval of the finalize hook, once made


def _at_finalize(comm, keyval, value):
    for fused in list(_lent):
        fused.gradient_buffer = fused.workspace = None
    _lent.clear()


class SharedSum:
    """One shared window of ``size`` rows of ``length`` elements of ``dtype`` (plus the
    ranks' scales), made collectively over a private duplicate of ``comm`` (all ranks on
    one node).

    ``own`` is this rank's row; calling the object with this rank's scale leaves in every
    row ``sum_q scale_q * row_q`` (each column summed once, in rank order, so every rank
    holds bitwise the same result). The window stays allocated until MPI finalises:
    arrays may view it, so it is never freed under them; :meth:`get` hands out an
    existing one for the same ranks, length and dtype, so repeated fits don't add any.
    """

    @classmethod
    def get(cls, comm, MPI, length, dtype):
        """A window for ``comm``'s ranks (in its order), ``length`` and ``dtype``: one made
        before when every rank has one, else a new one. Collective over ``comm``."""
        group = comm.Get_group()
        try:
            mine = next((i for i, made in enumerate(_made)
                         if made.length == length and made.dtype == np.dtype(dtype)
                         and MPI.Group.Compare(made.group, group) == MPI.IDENT), -1)
        finally:
            group.Free()
        lowest, highest = comm.allreduce(mine, op=MPI.MIN), comm.allreduce(mine, op=MPI.MAX)
        if lowest == highest >= 0:   # the same decision on every rank
            found = _made[mine]
            found.own.fill(0)
            return found
        made = cls(comm, MPI, length, dtype)
        _made.append(made)
        return made

    def __init__(self, comm, MPI, length, dtype):
        comm = comm.Dup()   # its own: the caller may free theirs
        self.comm, self.group, self.length = comm, comm.Get_group(), length
        size, rank = comm.Get_size(), comm.Get_rank()
        dtype = self.dtype = np.dtype(dtype)
        row_bytes = length * dtype.itemsize
        if row_bytes % _ALIGN:
            raise ValueError(f"length ({length}) must fill whole cache lines of {dtype}")
        data_bytes = size * row_bytes
        scale_bytes = -(-size * 8 // _ALIGN) * _ALIGN
        total = data_bytes + scale_bytes + _ALIGN
        self.window = MPI.Win.Allocate_shared(total if rank == 0 else 0, 1, comm=comm)
        memory, _ = self.window.Shared_query(0)
        raw = np.frombuffer(memory, np.uint8, total)
        # every rank must use the same offset into the window: rank 0's alignment
        offset = comm.bcast(-raw.ctypes.data % _ALIGN if rank == 0 else None, root=0)
        self.rows = raw[offset:offset + data_bytes].view(dtype).reshape(size, length)
        self.scales = raw[offset + data_bytes:offset + data_bytes + 8 * size].view(np.float64)
        self.own = self.rows[rank]
        self.own.fill(0)
        per_line = _ALIGN // dtype.itemsize
        lines = length // per_line   # each rank sums whole cache lines (no false sharing)
        self.lo = per_line * (lines * rank // size)
        self.hi = per_line * (lines * (rank + 1) // size)
        self.window.Lock_all(MPI.MODE_NOCHECK)

    def __call__(self, scale):
        """Sum the rows, this rank's scaled by ``scale``, into every row."""
        self.scales[self.comm.Get_rank()] = scale
        self._fence()   # every row and scale written
        _backend.scaled_sum_to_all(self.rows, self.scales, self.lo, self.hi)
        self._fence()   # every sum written back before anyone reads or rewrites a row

    def _fence(self):
        self.window.Sync()
        self.comm.Barrier()
        self.window.Sync()
