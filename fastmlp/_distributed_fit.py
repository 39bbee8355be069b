"""The estimators' data-parallel fit over an MPI communicator (``fit(..., comm=comm)``).

Every rank passes its own shard of the training data. On the one training loop
(:class:`fastmlp._loop.Loop`, driven by :class:`fastmlp._estimator_epochs.FitEpochs`) with:

- a sampler, :class:`ShardBatches`: each epoch every rank shuffles its shard (rank 0 with
  the estimator's own generator, rank ``r > 0`` with ``numpy.random.default_rng([seed, r,
  t_])``, ``seed`` rank 0's ``_split_seed``), and global step ``s`` takes ``counts[r, s]``
  consecutive rows of it (:func:`split_counts`: every global batch holds exactly
  ``batch_size`` samples, the last the rest, as one process's batches of the union);
- a gradient hook, :class:`AllReduceStep`: the rank's gradient and loss (weight decay
  ``alpha / W`` included, ``W`` the global batch's weight) scaled by ``W_r / W`` and summed
  with one in-place ``Allreduce`` of the packed gradient buffer: exactly the gradient of
  the union batch's objective. A rank with no rows in a step joins it with zeros.

Epoch losses, validation sums, stopping decisions and ``t_`` (global samples) are the same
on every rank; only rank 0 prints. mpi4py is imported here, not with fastmlp.
"""
import numpy as np

from . import _estimator_outputs as _outputs
from . import distributed
from ._estimator_epochs import FitEpochs
from ._loop import Batch, Loop, step

MPI_MISSING = ('fit(..., comm=...) needs mpi4py and an MPI library: pip install '
               '"fastmlp[mpi]" (mpi4py and MPICH), or mpi4py built against your system MPI')


class PeerFitError(RuntimeError):
    """Another rank's fit failed before training (its error is in the message)."""


def split_counts(sizes, batch_size):
    """``(K, S)`` int table: the rows rank ``r`` (of shard size ``sizes[r]``) gives to global
    step ``s``, ``S = ceil(N / batch_size)``. Step ``s`` holds ``min(batch_size, N - s *
    batch_size)`` rows in all, shared in proportion to the rows each rank has left (largest
    remainders, ties to the lower rank), so that every row is used once per epoch."""
    rem = np.array(sizes, dtype=np.int64)
    K, N = len(rem), int(rem.sum())
    S = -(-N // batch_size)
    table = np.zeros((K, S), np.int64)
    ranks = np.arange(K)
    for s in range(S):
        c = min(batch_size, N - s * batch_size)
        prod = c * rem
        R = int(rem.sum())
        a = prod // R
        left = c - int(a.sum())
        if left:
            a[np.lexsort((ranks, -(prod % R)))[:left]] += 1
        table[:, s] = a
        rem -= a
    return table


class FitComm:
    """One data-parallel fit's communicator and what the ranks agreed on."""

    def __init__(self, comm):
        MPI = distributed.import_mpi(MPI_MISSING)
        if not isinstance(comm, MPI.Comm):
            raise TypeError(f"comm must be an mpi4py communicator, got {type(comm).__name__}")
        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.sizes = self.n_total = self.seed0 = None
        self.blas_threads = distributed.set_rank_threads(comm)   # its share of the cores

    # -- agreeing before training (every collective here is an object allgather, so a
    # rank that fails joins the next one with its error and all ranks raise)

    def gather(self, what, value):
        everyone = self.comm.allgather(("ok", what, value))
        bad = [(r, v) for r, (tag, _, v) in enumerate(everyone) if tag == "error"]
        if bad:
            raise PeerFitError("the data-parallel fit failed on " + "; ".join(
                f"rank {r}: {v}" for r, v in bad))
        if any(w != what for _, w, _ in everyone):
            raise PeerFitError(f"the ranks are out of step: {[w for _, w, _ in everyone]}")
        return [v for _, _, v in everyone]

    def failed(self, exc):
        """Tell the other ranks this rank's fit failed (the caller re-raises)."""
        if not isinstance(exc, PeerFitError):
            self.comm.allgather(("error", None, f"{type(exc).__name__}: {exc}"))

    def union_labels(self, labels):
        """The classes over all ranks (sorted, as ``unique_labels``)."""
        from sklearn.utils.multiclass import unique_labels
        return unique_labels(*self.gather("classes", labels))

    def same_classes(self, classes):
        everyone = self.gather("classes", classes)
        if any(not np.array_equal(c, everyone[0]) for c in everyone):
            raise ValueError(f"partial_fit got different classes on the ranks: {everyone}")

    def rank_seed(self, split_seed):
        """This rank's validation-split seed (rank 0: the estimator's own)."""
        if self.rank == 0:
            return split_seed
        return int(np.random.default_rng([split_seed, self.rank]).integers(2**31 - 1))

    def agree(self, est, train, val, settings, split_seed):
        """Check that the ranks fit the same model the same way; the global sample count and
        whether the samples are weighted. Returns ``train`` (weights made global)."""
        w = train.w
        mine = {"settings": settings, "val": val is not None, "n": train.n,
                "weighted": w is not None, "seed": split_seed,
                "wmin": float(w.min()) if w is not None and train.n else np.inf,
                "wmax": float(w.max()) if w is not None and train.n else -np.inf}
        everyone = self.gather("agree", mine)
        for key in ("settings", "val"):
            differ = [r for r, e in enumerate(everyone) if e[key] != everyone[0][key]]
            if differ:
                raise ValueError(f"rank {differ[0]} differs from rank 0 in {key}: "
                                 f"{everyone[differ[0]][key]} vs {everyone[0][key]}")
        self.sizes = [e["n"] for e in everyone]
        self.n_total = sum(self.sizes)
        if self.n_total == 0:
            raise ValueError("no training samples with non-zero sample_weight remain on any rank")
        self.seed0 = everyone[0]["seed"]
        if any(e["weighted"] for e in everyone):
            lo = min(e["wmin"] if e["weighted"] else 1.0 for e in everyone if e["n"])
            hi = max(e["wmax"] if e["weighted"] else 1.0 for e in everyone if e["n"])
            if lo == hi:   # uniform over all ranks: the same objective as no weights
                train.w = None
            elif w is None:
                train.w = np.ones(train.n, train.X.dtype)
        return train

    def broadcast(self, net, first_pass):
        """Rank 0's parameters on every rank (a new network), then check them equal."""
        if first_pass:
            for p in net.params.values():
                self.comm.Bcast(p, root=0)
        self.check_parameters(net, "at the start of the fit")

    def check_parameters(self, net, when):
        distributed.check_same_parameters(self.comm, net.params, when)

    def allreduce(self, values):
        buf = np.asarray(values, dtype=np.float64).copy()
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def epochs(self, est, train, val, params, incremental):
        return DistributedFitEpochs(est, train, val, params, incremental, self)


# ----------------------------------------------------------------------------- the loop's parts

class ShardBatch(Batch):
    """A rank's part of a global batch: ``weight`` is the global batch's weight, ``count``
    its samples, ``local_weight`` this part's weight."""

    __slots__ = ("count", "local_weight")


class ShardBatches:
    """The sampler: this rank's part of every global batch (``counts`` from
    :func:`split_counts`); each epoch the shard is shuffled (``shuffle``) and the parts'
    weights are summed over the ranks (one Allreduce per epoch, weighted fits only)."""

    def __init__(self, X, y, w, counts, fc, rng, shuffle):
        self.X, self.y, self.w, self.fc, self.rng, self.shuffle = X, y, w, fc, rng, shuffle
        self.n = X.shape[0]
        self.bounds = np.concatenate([[0], np.cumsum(counts[fc.rank])])
        local_counts = counts[fc.rank].astype(np.float64)
        self.counts = counts.sum(axis=0)
        self.S = len(self.counts)
        self.s = 0
        self._epoch = (X, y, w)
        self.current = None
        self._local, self._global = local_counts, self.counts.astype(np.float64)   # unweighted
        if shuffle:   # the epoch's shuffled shard, in buffers kept for the fit
            self._buffers = (np.empty_like(X), np.empty_like(y),
                             None if w is None else np.empty_like(w))

    def draw(self, critical):
        if self.s == 0:
            if self.shuffle:
                perm = self.rng.permutation(self.n)
                X_buf, y_buf, w_buf = self._buffers
                self._epoch = (np.take(self.X, perm, axis=0, out=X_buf),
                               np.take(self.y, perm, axis=0, out=y_buf),
                               None if self.w is None else np.take(self.w, perm, out=w_buf))
            w = self._epoch[2]
            if w is not None:   # the parts' weights change with the shuffle
                b = self.bounds
                self._local = np.array([float(w[b[s]:b[s + 1]].sum()) for s in range(self.S)])
                self._global = self.fc.allreduce(self._local)
        X, y, w = self._epoch
        s = self.s
        lo, hi = self.bounds[s], self.bounds[s + 1]
        local = float(self._local[s])
        w_b = None
        if w is not None:
            w_b = w[lo:hi] * ((hi - lo) / local) if hi > lo else w[lo:hi]
        batch = ShardBatch(X[lo:hi], y[lo:hi], w_b, float(self._global[s]), s == self.S - 1)
        batch.count, batch.local_weight = int(self.counts[s]), local
        self.current = batch
        return batch

    def commit(self):
        self.s = (self.s + 1) % self.S


class AllReduceStep:
    """The Loop's ``take_step``: :func:`fastmlp._loop.step` with the all-reduce as its
    gradient hook (and a rank without rows in the step joining it with zeros)."""

    def __init__(self, fc, net, optimizer, sampler):
        self.fc, self.net, self.optimizer, self.sampler = fc, net, optimizer, sampler
        self._reducer = distributed.PackedAllReduce(fc.comm, net)
        self._empty = distributed.NoRows(net.params, self._reducer)
        self.data_loss = 0.0

    def __call__(self, x, t, sample_weight, weight_decay):
        net = self.net if x.shape[0] else self._empty
        return step(net, self.optimizer, x, t, sample_weight, weight_decay,
                    gradient_hook=self.hook)

    def hook(self, grads, loss):
        """This rank's share (its weight over the global batch's) of the gradient, the loss
        and the data loss, summed over the ranks; returns the global loss."""
        batch = self.sampler.current
        data_loss = float(self.net.last_layer.loss) if batch.x.shape[0] else 0.0
        loss, self.data_loss = self._reducer(self.net, grads, batch.local_weight / batch.weight,
                                             (loss, data_loss))
        return loss


class DistributedFitEpochs(FitEpochs):
    """:class:`FitEpochs` over the ranks: the shard sampler, the all-reduce step, global
    sample counts, all-reduced validation sums, agreed stopping, printing on rank 0."""

    def __init__(self, est, train, val, params, incremental, fc):
        self.fc = fc
        super().__init__(est, train, val, params, incremental)
        if fc.rank != 0:
            self.verbose = 0

    def _make_loop(self, train):
        est, fc = self.est, self.fc
        counts = split_counts(fc.sizes, est._batch_size(self.params, fc.n_total))
        rng = (est._rng if fc.rank == 0
               else np.random.default_rng([fc.seed0, fc.rank, int(est.t_)]))
        self.sampler = ShardBatches(train.X, train.y, train.w, counts, fc, rng, est.shuffle)
        self.stepper = AllReduceStep(fc, est._net, est._optimizer, self.sampler)
        return Loop(self.sampler, self, self.stepper)

    def data_loss(self):
        return self.stepper.data_loss

    def samples(self, batch):
        return batch.count

    def end_epoch(self, critical):
        super().end_epoch(critical)
        self.fc.check_parameters(self.est._net, f"after epoch {len(self.est.loss_curve_)}")

    def evaluate(self, val):
        if self.est._loss_name == "cross_entropy":
            return _classifier_scores(self.fc, self.est._net, val)
        return _regressor_scores(self.fc, self.est, val)

    def agree_stop(self, stop, message, epoch):
        anyone = bool(self.fc.comm.allreduce(int(bool(stop)), op=self.fc.MPI.MAX))
        if anyone and not stop:
            message = f"A callback on another rank stopped training after epoch {epoch}."
        return anyone, message


def _classifier_scores(fc, net, val):
    """(accuracy, mean log-loss) over every rank's validation rows."""
    sums = np.zeros(4)
    if val.n:
        scores = net.predict(val.X)
        if not np.isfinite(scores).all():
            sums[3] = 1.0
        else:
            correct, loss = _outputs.class_rows(scores, val.y)
            if val.w is None:
                sums[:3] = correct.sum(), loss.sum(), val.n
            else:
                sums[:3] = np.dot(val.w, correct), np.dot(val.w, loss), val.w.sum()
    sums = fc.allreduce(sums)
    if sums[3]:
        return np.nan, np.nan
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


def _regressor_scores(fc, est, val):
    """(R² averaged over the outputs, the data loss as ``loss_curve_`` counts it) over every
    rank's validation rows (two all-reduces: the weighted means, then the sums of squares)."""
    n_out = val.y.shape[1]
    w = np.ones(val.n) if val.w is None else val.w.astype(np.float64)
    y = val.y.astype(np.float64)
    first = np.zeros(2 + n_out)
    pred = scores = None
    if val.n:
        scores = est._net.predict(val.X)
        pred = _outputs.regression_outputs(est, scores).astype(np.float64)
        first[0] = 0.0 if np.isfinite(pred).all() else 1.0
        first[1] = w.sum()
        first[2:] = w @ y
    first = fc.allreduce(first)
    if first[0]:
        return np.nan, np.nan
    mean = first[2:] / first[1]
    second = np.zeros(1 + 2 * n_out)
    if val.n:
        sq = (pred - y) ** 2
        second[0] = w @ _outputs.regression_rows(est, scores, y)
        second[1:1 + n_out] = w @ sq
        second[1 + n_out:] = w @ (y - mean) ** 2
    second = fc.allreduce(second)
    res, tot = second[1:1 + n_out], second[1 + n_out:]
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(tot > 0, 1.0 - res / np.where(tot > 0, tot, 1.0),
                      np.where(res == 0, 1.0, 0.0))
    return float(r2.mean()), float(second[0] / first[1])
