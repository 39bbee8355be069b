"""The one training loop under every front door (``Trainer``, the estimators).

A step is: a batch, the gradient (or one fused SGD pass), a finite check of
the loss computed *before* the update, then the update. The loss of a step
that is NaN or infinite is returned without any update applied; the caller
turns it into a :class:`DivergenceError` with its own wording.
"""
import math
import sys

import numpy as np

from ._sparse_rows import dense_rows, is_sparse


class DivergenceError(FloatingPointError, ValueError):
    """Training stopped because the loss became NaN or infinite.

    The update of the failing step was not applied: the network's parameters
    (and the optimizer's state) are those of the last good step. A ValueError
    too, as scikit-learn's MLP raises ValueError ("Solver produced non-finite
    parameter weights") where its training diverges.

    Attributes
    ----------
    step : int
        1-based number of the step whose loss was not finite
        (``trainer.current_iter + 1``).
    epoch : int
        1-based epoch that step belongs to.
    loss : float
        The non-finite loss.
    """

    def __init__(self, message, step, epoch, loss):
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.loss = loss


def step(network, optimizer, x, t, sample_weight=None, weight_decay=None, gradient_hook=None):
    """One training step; returns the loss before the update (no update when it is not finite).

    Fused (forward, backward and ``p -= lr * g`` in one compiled pass, no
    gradient stored) when the optimizer is plain SGD (``optimizer.fused_lr()``
    gives its rate), the network offers ``fused_sgd_step`` and accepts, and no
    ``gradient_hook`` must see the gradients. Otherwise ``network.gradient``;
    then ``loss = gradient_hook(grads, loss)`` (e.g. an all-reduce over
    data-parallel workers: it may change the gradients in place and returns the
    loss to check, called whatever the local loss, so that every worker joins
    it); the finite check; ``optimizer.update``.
    """
    if gradient_hook is None:
        fused_lr = getattr(optimizer, "fused_lr", None)
        lr = fused_lr() if fused_lr is not None else None
        fused_step = getattr(network, "fused_sgd_step", None) if lr is not None else None
        if fused_step is not None:
            loss = fused_step(x, t, lr, sample_weight, weight_decay)
            if loss is not None:
                return loss
    if sample_weight is None:
        grads = network.gradient(x, t, weight_decay=weight_decay)
    else:
        grads = network.gradient(x, t, sample_weight, weight_decay=weight_decay)
    loss = network.last_loss
    if gradient_hook is not None:
        loss = gradient_hook(grads, loss)
    if math.isfinite(loss):
        optimizer.update(network.params, grads)
    return loss


class Batch:
    """One mini-batch: inputs, targets, optional per-sample weights (rescaled to mean 1),
    its total weight (the sample count when unweighted) and whether it ends an epoch."""

    __slots__ = ("x", "t", "sample_weight", "weight", "ends_epoch")

    def __init__(self, x, t, sample_weight, weight, ends_epoch):
        self.x, self.t, self.sample_weight = x, t, sample_weight
        self.weight, self.ends_epoch = weight, ends_epoch


class ShuffledStream:
    """The book Trainer's batches: ``batch_size`` samples at a time, drawn without
    replacement from a stream of permutations (a fresh one from ``rng`` whenever the last
    is used up), gathered into buffers kept for the run (converted to ``dtype``).

    ``draw`` keeps the position after the batch aside; ``commit`` (in the step's critical
    section) takes it, so a step that is interrupted or diverges leaves the stream where it
    was and the next step retries the same batch. With ``rows=(lo, hi)`` only those rows of
    each batch are gathered (a data-parallel worker's share; the stream is the same)."""

    def __init__(self, x, t, batch_size, rng, dtype, rows=None):
        n = x.shape[0]
        self.x, self.t, self.batch_size, self.rng = x, t, batch_size, rng
        self.perm = np.arange(n)
        self.pos = n              # used up: the first batch shuffles
        self._next_perm = None    # the permutation drawn for the next pass, until a step uses it
        self._drawn = None        # (perm, pos) after the batch last drawn
        self._idx = np.empty(batch_size, dtype=np.intp)
        self._rows = slice(None) if rows is None else slice(*rows)
        m = len(range(batch_size)[self._rows])
        self._x_drawn = np.empty((m,) + x.shape[1:], dtype=x.dtype)
        self._x = (self._x_drawn if x.dtype == dtype
                   else np.empty(self._x_drawn.shape, dtype=dtype))
        self._t = np.empty((m,) + t.shape[1:], dtype=t.dtype)

    def draw(self, critical):
        idx = self._walk(critical)[self._rows]
        # mode="clip": indices are valid, and it lets numpy write into out unbuffered
        np.take(self.x, idx, axis=0, out=self._x_drawn, mode="clip")
        if self._x is not self._x_drawn:
            np.copyto(self._x, self._x_drawn)   # to the network's dtype, no allocation
        np.take(self.t, idx, axis=0, out=self._t, mode="clip")
        return Batch(self._x, self._t, None, float(self.batch_size), False)

    def _walk(self, critical):
        """The next ``batch_size`` indices of the stream (its position kept aside)."""
        idx, filled, n = self._idx, 0, self.perm.shape[0]
        perm, pos = self.perm, self.pos
        while filled < self.batch_size:   # at most one reshuffle (batch_size <= n)
            if pos == n:
                if self._next_perm is None:
                    with critical:   # the generator's draw and the permutation kept together
                        shuffled = perm.copy()
                        self.rng.shuffle(shuffled)
                        self._next_perm = shuffled
                perm, pos = self._next_perm, 0
            take = min(self.batch_size - filled, n - pos)
            idx[filled:filled + take] = perm[pos:pos + take]
            filled += take
            pos += take
        self._drawn = (perm, pos)
        return idx

    def commit(self):
        perm, pos = self._drawn
        if perm is not self.perm:
            self.perm, self._next_perm = perm, None
        self.pos = pos


class SampledStream(ShuffledStream):
    """The book Trainer's own batches: each step ``batch_size`` indices drawn uniformly
    *with* replacement, ``rng.choice(N, batch_size)`` (``rng`` the ``np.random`` module
    for numpy's global state, so the draws are the book's ``np.random.choice``). A drawn
    batch is kept until ``commit``, so an interrupted or diverged step retries it."""

    def __init__(self, x, t, batch_size, rng, dtype):
        super().__init__(x, t, batch_size, rng, dtype)
        self._pending = None

    def _walk(self, critical):
        if self._pending is None:
            with critical:   # the generator's draw and the indices kept together
                self._pending = np.asarray(self.rng.choice(self.x.shape[0], self.batch_size),
                                           dtype=np.intp)
        return self._pending

    def commit(self):
        self._pending = None


class EpochBatches:
    """scikit-learn's batches: each epoch a permutation of the samples (when ``shuffle``),
    cut into consecutive batches of ``batch_size`` with a short last one. With sample
    weights, a batch's weights are rescaled to mean 1 and its ``weight`` is their sum.
    A sparse X (CSR) stays sparse: each batch's rows are densified into one buffer as they are
    drawn (the same rows, bit for bit, as from its dense twin)."""

    def __init__(self, X, y, w, batch_size, rng, shuffle):
        self.X, self.y, self.w = X, y, w
        self.n, self.batch_size, self.rng, self.shuffle = X.shape[0], batch_size, rng, shuffle
        self.start = 0
        self._epoch = (X, y, w)
        self._rows = None   # sparse X: the epoch's order of rows (None: as stored)
        self._x_batch = (np.empty((min(batch_size, self.n), X.shape[1]), X.dtype)
                         if is_sparse(X) else None)
        if shuffle:
            self._buffers = (None if self._x_batch is not None else np.empty_like(X),
                             np.empty_like(y), None if w is None else np.empty_like(w))

    def draw(self, critical):
        if self.start == 0 and self.shuffle:
            perm = self.rng.permutation(self.n)
            X_buf, y_buf, w_buf = self._buffers
            self._rows = perm
            self._epoch = (self.X if X_buf is None else np.take(self.X, perm, axis=0, out=X_buf),
                           np.take(self.y, perm, axis=0, out=y_buf),
                           None if self.w is None else np.take(self.w, perm, out=w_buf))
        X, y, w = self._epoch
        start, end = self.start, min(self.start + self.batch_size, self.n)
        m = end - start
        if w is None:
            w_b, weight = None, float(m)
        else:
            w_b = w[start:end]
            weight = float(w_b.sum())   # > 0: zero-weight samples were dropped before
            w_b = w_b * (m / weight)    # a weighted mean over the batch
        self._end = end
        if self._x_batch is None:
            x = X[start:end]
        else:
            rows = slice(start, end) if self._rows is None else self._rows[start:end]
            x = dense_rows(X, rows, self._x_batch)
        return Batch(x, y[start:end], w_b, weight, end == self.n)

    def commit(self):
        self.start = 0 if self._end == self.n else self._end


class Loop:
    """The training loop: batches from ``sampler``, one :func:`step` each, and the front
    door's bookkeeping, each step whole or not at all under Ctrl-C.

    ``door`` is the front door (the Trainer, an estimator's fit) and supplies:

    - ``batch_weight_decay(batch)``: the L2 strength for this batch (None: the network's own);
    - ``record_step(batch, loss)``: a step's bookkeeping, in its critical section;
    - ``epoch_end_due(batch)`` and ``end_epoch(critical)``: whether this step ended an
      epoch, and the epoch's bookkeeping (evaluation, histories, schedules), in the same
      critical section;
    - ``diverged(loss)``: raise :class:`DivergenceError` (nothing was applied).

    ``take_step(x, t, sample_weight, weight_decay)`` takes one step and returns its loss:
    :func:`step` on the front door's network and optimizer (``functools.partial(step,
    network, optimizer)``), with a gradient hook where a data-parallel trainer all-reduces.
    """

    def __init__(self, sampler, door, take_step):
        self.sampler, self.door, self.take_step = sampler, door, take_step

    def run_step(self, critical):
        """One step and its bookkeeping; returns True when it ended an epoch."""
        door = self.door
        batch = self.sampler.draw(critical)
        ended = False
        with critical:
            loss = float(self.take_step(batch.x, batch.t, batch.sample_weight,
                                        door.batch_weight_decay(batch)))
            if math.isfinite(loss):
                self.sampler.commit()
                door.record_step(batch, loss)
                ended = door.epoch_end_due(batch)
                if ended:
                    door.end_epoch(critical)
        if not math.isfinite(loss):
            door.diverged(loss)
        return ended

    def run(self, critical, done, after_step=None, after_epoch=None):
        """Steps until ``done()``; ``after_step()`` after each, ``after_epoch()`` after an
        epoch's end (outside the critical section: progress, callbacks); it returns True
        to stop."""
        while not done():
            ended = self.run_step(critical)
            if after_step is not None:
                after_step()
            if ended and after_epoch is not None and after_epoch():
                return


def progress_bar(total, unit, *, initial=0, desc=None, terminal_only=False, notebook=False):
    """A tqdm bar that does not stay on screen; with ``terminal_only`` shown only when
    stderr is a terminal; with ``notebook`` a widget in Jupyter (``tqdm.auto``, whose
    import costs ~40 ms more: asyncio)."""
    if notebook:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit=unit, desc=desc, leave=False,
                dynamic_ncols=True, disable=None if terminal_only else False)


def write_line(bar, line):
    """Print ``line`` on stdout without breaking the progress bar (if any)."""
    if bar is not None:
        bar.write(line, file=sys.stdout)
    else:
        print(line)
