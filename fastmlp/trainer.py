"""The book's training loop (``common/trainer.py``): mini-batches, epochs, accuracy history.

Two ways to draw the mini-batches (``sampling``):

- ``'book'`` (default), the book's run, step for step: each step draws
  ``mini_batch_size`` samples *with* replacement (``choice(N, batch_size)``,
  from numpy's global state when ``seed=None``, exactly the book's
  ``np.random.choice``), applies the update, then records the batch's loss
  after the update (``network.loss``, one more fused forward pass, as the
  book); the accuracies are measured after steps 0, ``iter_per_epoch``,
  ``2 * iter_per_epoch``, ... (the book's ``current_iter % iter_per_epoch ==
  0``; where ``iter_per_epoch`` is not whole the book measures only after
  step 0, fastmlp after each ``ceil(k * iter_per_epoch)``). With the same
  weights and seed the run equals the book's to rounding.
- ``'epoch'``: each epoch a fresh permutation, so every sample is seen once
  per epoch; the loss recorded is the one computed in the step's own forward
  pass, before the update (no extra pass); the accuracies are measured at
  the *end* of each epoch, so ``test_acc_list[-1]`` is the trained network's.
  This is what ``fastmlp train``, checkpoints and the data-parallel trainer use.

Beyond the book, in both: everything is validated up front, data is converted
to the network's dtype once, a loss that becomes NaN or infinite stops
training with a :class:`DivergenceError` before the offending update, a tqdm
progress bar instead of the book's printed loss per step, an optional
learning-rate decay, and Ctrl-C is safe: a step (update,
``train_loss_list``, ``current_iter``, the stream's position and, after an
epoch's evaluation, the accuracies, ``current_epoch`` and the decay) is
recorded whole or not at all, so after a ``KeyboardInterrupt`` the trainer is
exactly as after its last whole step and ``train()`` resumes as if never
interrupted.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from . import _describe, _sigint
from ._networks import MultiLayerNet
from . import optimizers as _optimizers
from ._random import check_seed, generator, normal_source
from ._loop import DivergenceError, Loop, SampledStream, ShuffledStream, step
from ._progress import Progress
from ._typing import Seed, SupportsUpdate
from ._validation import as_array, as_float, check_positive_float, check_positive_int, check_targets, lookup

__all__ = ["Trainer", "DivergenceError"]

# Rows per forward pass when measuring accuracy: bounds the memory of the
# per-epoch evaluation on large data sets.
EVAL_CHUNK_ROWS = 2048
_FINITE_CHECK_ROWS = 4096   # rows per chunk of the NaN/inf check of the data
_SAMPLINGS = {"book": "book", "epoch": "epoch"}


def _network_dtype(network):
    dtype = getattr(network, "dtype", None)
    if dtype is None:
        first = next(iter(network.params.values()))
        dtype = first.dtype
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"network parameters must be float32 or float64, got {dtype}")
    return dtype.type


def _check_network(network):
    if getattr(network, "loss_name", "cross_entropy") != "cross_entropy":
        raise TypeError(f"network has loss={network.loss_name!r}; the Trainer measures accuracy "
                        "and needs a classifier (loss='cross_entropy')")
    params = getattr(network, "params", None)
    if not hasattr(params, "items") or not params:
        raise TypeError("network must have a non-empty dict of arrays 'params' "
                        f"(got {type(network).__name__})")
    if not callable(getattr(network, "accuracy", None)):
        raise TypeError(f"network must have an accuracy(x, t) method ({type(network).__name__} has none)")
    if not (callable(getattr(network, "train_step", None))
            or callable(getattr(network, "gradient", None))):
        raise TypeError("network must have gradient(x, t) (or train_step(x, t, optimizer)); "
                        f"{type(network).__name__} has neither")


class Trainer:
    """Train a network with mini-batch gradient descent, as the book's ``Trainer``.

    Parameters
    ----------
    network : object
        A ``fastmlp.TwoLayerNet``/``MultiLayerNet`` or anything with the
        book's network interface: ``params`` (dict of float arrays, updated in
        place), ``gradient(x, t)`` and ``accuracy(x, t)``. If it has
        ``train_step(x, t, optimizer)`` (one fused forward, backward and
        update that returns the loss computed before the update, and applies
        no update when that loss is not finite), that faster path is used.
    x_train : array_like, shape (N, features)
        Training samples, finite.
    t_train : array_like, shape (N,) or (N, classes)
        Integer labels in ``[0, classes)`` or one-hot rows.
    x_test : array_like, shape (M, features)
    t_test : array_like, shape (M,) or (M, classes)
    epochs : int, default 20
    mini_batch_size : int, default 100
        At most the number of training samples.
    optimizer : str or optimizer object, default 'SGD'
        'SGD', 'Momentum', 'Nesterov', 'AdaGrad', 'RMSprop' or 'Adam'
        (case-insensitive), built with ``optimizer_param``; or an object with
        an ``update(params, grads)`` method and an ``lr`` attribute.
    optimizer_param : dict, default {'lr': 0.01}
        Keyword arguments of the optimizer class.
    evaluate_sample_num_per_epoch : int, optional
        Measure the per-epoch accuracies on the first this many training and
        test samples only (the book's option); default all of them.
    verbose : bool, default True
        Print one line per epoch and the final test accuracy, and show a
        progress bar (on stderr when it is a terminal, or in a notebook; only the
        lines when the output is redirected).
    lr_decay : float, optional
        Multiply the optimizer's learning rate by this factor in ``(0, 1]``
        at the end of every epoch: with ``lr=0.09, lr_decay=0.9`` the first
        epoch trains at 0.09 and the second at 0.081 (``'book'`` sampling:
        at each evaluation but the first, after that step's update).
    seed : None, int, numpy.random.Generator or RandomState
        The batches' stream. None: numpy's global random state (so
        ``np.random.seed(s)`` before the run repeats it; with ``'book'``
        sampling every draw is the book's ``np.random.choice``, with
        ``'epoch'`` one draw seeds a Generator); an int:
        ``numpy.random.default_rng(seed)``; a Generator: used as it is; a
        RandomState: drawn from (``'epoch'``: one draw seeds the stream).
    sampling : {'book', 'epoch'}, default 'book'
        How batches are drawn, when the loss is recorded and when the
        accuracies are measured (see the module docstring): ``'book'`` as the
        book's Trainer, ``'epoch'`` once per sample per epoch.

    Attributes
    ----------
    train_loss_list : list of float
        The loss of every step's mini-batch (``'book'``: after the step's
        update, as the book; ``'epoch'``: before it).
    train_acc_list, test_acc_list : list of float
        Accuracies at each epoch's evaluation.
    optimizer : object
        The optimizer instance (its ``lr`` reflects any decay so far).
    iter_per_epoch : float
        ``max(N / mini_batch_size, 1)``, as in the book.
    max_iter : int
        ``int(epochs * iter_per_epoch)``: the steps ``train()`` runs.
    current_iter, current_epoch : int
        Steps and epochs completed.
    final_test_acc : float or None
        Accuracy on the whole test set after ``train()``.

    Raises
    ------
    TypeError, ValueError
        From the constructor, naming the argument, for any invalid argument.
    DivergenceError
        From ``train``/``train_step`` when the loss becomes NaN or infinite.
    KeyboardInterrupt
        From ``train``/``train_step`` on Ctrl-C, the trainer as after its last
        whole step (see ``train``). A constructor that raises changes nothing
        (the network, an optimizer object, the seed Generator, the data).
    """

    #: whether a verbose ``train()`` ends with the book's "Final Test Accuracy" lines (a front
    #: door that prints a summary of its own, as ``fastmlp train``, turns them off)
    print_final_accuracy = True

    def __repr__(self) -> str:
        return _describe.trainer_repr(self)

    def __init__(self, network: Any, x_train: ArrayLike, t_train: ArrayLike, x_test: ArrayLike,
                 t_test: ArrayLike, epochs: int = 20, mini_batch_size: int = 100,
                 optimizer: str | SupportsUpdate = "SGD",
                 optimizer_param: Mapping[str, Any] | None = None,
                 evaluate_sample_num_per_epoch: int | None = None, verbose: bool = True,
                 lr_decay: float | None = None, seed: Seed = None, *,
                 sampling: str = "book") -> None:
        # --- validate everything before keeping anything
        _check_network(network)
        dtype = _network_dtype(network)
        x_train, t_train = self._check_data(network, x_train, t_train, dtype, "x_train", "t_train")
        x_test, t_test = self._check_data(network, x_test, t_test, dtype, "x_test", "t_test")
        if x_train.shape[1] != x_test.shape[1]:
            raise ValueError(f"x_train has {x_train.shape[1]} features per sample but x_test has "
                             f"{x_test.shape[1]}")
        epochs = check_positive_int(epochs, "epochs")
        mini_batch_size = check_positive_int(mini_batch_size, "mini_batch_size")
        train_size = self._global_train_size(x_train.shape[0])
        if mini_batch_size > train_size:
            raise ValueError(f"mini_batch_size ({mini_batch_size}) exceeds the number of training "
                             f"samples ({train_size})")
        if evaluate_sample_num_per_epoch is not None:
            evaluate_sample_num_per_epoch = check_positive_int(
                evaluate_sample_num_per_epoch, "evaluate_sample_num_per_epoch")
        if lr_decay is not None:
            lr_decay = check_positive_float(lr_decay, "lr_decay")
            if lr_decay > 1:
                raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}")
        if not isinstance(verbose, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"verbose must be a bool, got {type(verbose).__name__}")
        optimizer = self._make_optimizer(optimizer, optimizer_param)
        if lr_decay is not None and not isinstance(getattr(optimizer, "lr", None), numbers.Real):
            raise TypeError("lr_decay needs an optimizer with a numeric 'lr' attribute")
        sampling = lookup(_SAMPLINGS, sampling, "sampling")
        check_seed(seed)   # the draw from a global state comes last, after every check
        rng = normal_source(seed) if sampling == "book" else generator(seed)

        # --- state
        self.network = network
        self.dtype = dtype
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.verbose = bool(verbose)
        self.lr_decay = lr_decay
        self.optimizer: Any = optimizer   # an Optimizer, or any object with update() (and lr)
        self.sampling = sampling
        self._loss_after_update: Any = None   # 'book': the pending step's loss after its update

        self.train_size = train_size
        self.iter_per_epoch = max(train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0
        self.final_test_acc: float | None = None
        self._full_test_acc_at: int | None = None  # current_iter of the last whole-test-set eval

        self.train_loss_list: list[float] = []
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []

        self._stream = self._make_stream(x_train, t_train, mini_batch_size, rng, dtype)
        self._loop = Loop(self._stream, self, self._take_step)
        self._bar: Progress | None = None

    # ------------------------------------------------------------------ checks

    @staticmethod
    def _check_data(network: Any, x: ArrayLike, t: ArrayLike, dtype: Any, x_name: str,
                    t_name: str) -> tuple[np.ndarray, np.ndarray]:
        """``x`` as a C-contiguous finite array of the network's dtype; ``t`` as labels or one-hot."""
        x = as_array(x, x_name)  # rejects complex, object and non-arrays before converting
        # float32/float64 data stays in its own dtype (batches are converted as they are
        # drawn), so float32 data for a float64 network is not copied whole
        keep = x.dtype in (np.dtype(np.float32), np.dtype(np.float64))
        x = np.asarray(x, dtype=x.dtype if keep else dtype, order="C")  # at most one copy
        x = as_float(x, x_name, dtype=x.dtype, ndim=2)
        for start in range(0, x.shape[0], _FINITE_CHECK_ROWS):   # bounded temporary memory
            if not np.isfinite(x[start:start + _FINITE_CHECK_ROWS]).all():
                raise ValueError(f"{x_name} contains NaN or infinity")
        input_size = getattr(network, "input_size", None)
        if input_size is not None and x.shape[1] != input_size:
            raise ValueError(f"{x_name} has {x.shape[1]} features per sample but the network has "
                             f"input_size={input_size}")
        n_classes = getattr(network, "output_size", None)
        if n_classes is None:  # a book-style network without output_size: ask it
            n_classes = np.shape(network.predict(x[:1]))[1]
        labels, onehot = check_targets(t, x.shape[0], n_classes, dtype, name=t_name)
        t = np.ascontiguousarray(labels if labels is not None else onehot)
        return x, t

    @staticmethod
    def _make_optimizer(optimizer, optimizer_param):
        if isinstance(optimizer, str):
            if optimizer_param is None:
                optimizer_param = {"lr": 0.01}
            if not hasattr(optimizer_param, "keys"):
                raise TypeError(f"optimizer_param must be a dict, got {type(optimizer_param).__name__}")
            optimizer_class = lookup(_optimizers.OPTIMIZERS, optimizer, "optimizer")
            try:
                return optimizer_class(**optimizer_param)
            except TypeError as exc:
                if "argument" in str(exc):  # an unknown keyword
                    raise TypeError(f"optimizer_param {dict(optimizer_param)} does not fit "
                                    f"{optimizer!r}: {exc}") from None
                raise
        if callable(getattr(optimizer, "update", None)):
            if optimizer_param is not None:
                raise ValueError("optimizer_param is only used with an optimizer name; "
                                 "pass the parameters to the optimizer object instead")
            return optimizer
        raise TypeError("optimizer must be an optimizer name or an object with update(params, grads), "
                        f"got {type(optimizer).__name__}")

    def _make_stream(self, x_train, t_train, batch_size, rng, dtype):
        """The mini-batch sampler (a subclass's: a data-parallel rank's share of each batch)."""
        if self.sampling == "book":
            return SampledStream(x_train, t_train, batch_size, rng, dtype)
        return ShuffledStream(x_train, t_train, batch_size, rng, dtype)

    # ------------------------------------------------------------------ steps

    def _next_batch(self, critical=None):
        """The next mini-batch ``(x, t)`` of the shuffled stream (taken by a step only once
        its update is applied)."""
        batch = self._stream.draw(_sigint.critical_section() if critical is None else critical)
        return batch.x, batch.t

    def train_step(self) -> float:
        """Run one step: next mini-batch, gradient, update; at an epoch's end, evaluate.

        Returns
        -------
        float
            The mini-batch's loss, computed before the update.

        Raises
        ------
        DivergenceError
            If that loss is NaN or infinite. The update is not applied, so the
            parameters and the optimizer state stay those of the last good
            step, and ``current_iter`` is not advanced (the next step retries
            the same mini-batch).
        KeyboardInterrupt
            On Ctrl-C, with the step applied whole (update, ``train_loss_list``,
            ``current_iter`` and, after an epoch's last step, the epoch's
            accuracies, ``current_epoch`` and learning-rate decay) or not at
            all.
        """
        with _sigint.deferred_sigint() as critical:
            self._finish_pending_epoch(critical)
            self._loop.run_step(critical)
            return self.train_loss_list[-1]

    def _finish_pending_epoch(self, critical):
        """An epoch end whose evaluation raised: record it before the next step."""
        if self.epoch_end_due():
            with critical:
                self.end_epoch(critical)

    def _take_step(self, x, t, sample_weight, weight_decay):
        """One step of ``self.network`` by ``self.optimizer`` (public: read at every step).
        fastmlp's networks take :func:`fastmlp._loop.step`; another network's own
        ``train_step(x, t, optimizer)`` is used when it has one; else its ``gradient(x, t)``
        and ``loss(x, t)`` (one more forward pass, before the update)."""
        network, optimizer = self.network, self.optimizer
        if isinstance(network, MultiLayerNet):   # compiled or reference
            loss = step(network, optimizer, x, t)
        elif callable(getattr(network, "train_step", None)):
            loss = network.train_step(x, t, optimizer)
        else:
            grads = network.gradient(x, t)
            loss = float(network.loss(x, t))
            if math.isfinite(loss):
                optimizer.update(network.params, grads)
        if self.sampling == "book" and math.isfinite(loss):
            self._loss_after_update = float(network.loss(x, t))   # what the book records
        return loss

    # the Loop's front-door hooks ----------------------------------------

    def batch_weight_decay(self, batch: Any) -> float | None:
        return None   # the network's own weight_decay_lambda

    def record_step(self, batch: Any, loss: float) -> None:
        """The bookkeeping of an applied step (inside the step's critical section)."""
        if self.sampling == "book":
            loss, self._loss_after_update = self._loss_after_update, None
        self.train_loss_list.append(loss)
        self.current_iter += 1

    def epoch_end_due(self, batch: Any = None) -> bool:
        if self.sampling == "book":   # after steps 0, ceil(ipe), ceil(2 ipe), ... as the book
            return self.current_iter - 1 == math.ceil(self.current_epoch * self.iter_per_epoch)
        return self.current_iter >= int((self.current_epoch + 1) * self.iter_per_epoch)

    def diverged(self, loss: float) -> None:
        number = self.current_iter + 1
        epoch = self.current_epoch + 1
        lr = getattr(self.optimizer, "lr", None)
        hint = f"; try a smaller learning rate than {lr:g}" if isinstance(lr, numbers.Real) else ""
        raise DivergenceError(
            f"training diverged: the loss became {loss} at step {number} (epoch {epoch}); "
            f"that update was not applied, the parameters are those after step {number - 1}{hint}",
            step=number, epoch=epoch, loss=loss)

    def _accuracy(self, x, t):
        """Accuracy over ``x`` in chunks of EVAL_CHUNK_ROWS rows (bounded memory)."""
        n = x.shape[0]
        if n <= EVAL_CHUNK_ROWS:
            return float(self.network.accuracy(x, t))
        correct = 0
        for start in range(0, n, EVAL_CHUNK_ROWS):
            stop = min(start + EVAL_CHUNK_ROWS, n)
            correct += round(float(self.network.accuracy(x[start:stop], t[start:stop])) * (stop - start))
        return correct / n

    def end_epoch(self, critical: Any) -> None:
        """Measure the accuracies and record the epoch's end (called inside the critical
        section of the epoch's last step)."""
        k = self.evaluate_sample_num_per_epoch
        train_acc = self._train_accuracy(k)
        if k is None:
            test_acc = self._accuracy(self.x_test, self.t_test)
        else:
            test_acc = self._accuracy(self.x_test[:k], self.t_test[:k])
        with critical:
            self.current_epoch += 1
            if k is None:
                self._full_test_acc_at = self.current_iter
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.lr_decay is not None and (self.sampling == "epoch" or self.current_epoch > 1):
                _optimizers.EpochDecayLR(self.lr_decay).epoch_end(self.optimizer, self.current_iter)
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{self.train_loss_list[-1]:.4f}", test_acc=f"{test_acc:.4f}")
        if self.verbose:
            self._print(f"=== epoch:{self.current_epoch}, train acc:{train_acc:.4f}, "
                        f"test acc:{test_acc:.4f} ===")

    def _train_accuracy(self, k):
        """Accuracy on the training set (on its first ``k`` samples when ``k`` is given)."""
        if k is None:
            return self._accuracy(self.x_train, self.t_train)
        return self._accuracy(self.x_train[:k], self.t_train[:k])

    @staticmethod
    def _global_train_size(n):
        """The training set's size (a data-parallel trainer on shards: the sum over ranks)."""
        return n

    def _print(self, line):
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line)

    # ------------------------------------------------------------------ the loop

    def train(self) -> float:
        """Run the remaining steps up to ``max_iter``, then measure the test accuracy.

        Resumable: after a :class:`DivergenceError` (say, once the learning
        rate was lowered) another call continues from ``current_iter``.

        Ctrl-C raises ``KeyboardInterrupt`` (as in the book) and leaves the
        trainer consistent: the network's parameters and the optimizer's state
        are those after ``current_iter`` whole steps, ``train_loss_list`` holds
        exactly those steps' losses, ``train_acc_list``/``test_acc_list`` the
        ``current_epoch`` recorded epoch ends; no update is ever half applied.
        Calling ``train()`` again continues with the same mini-batches (and the
        same epoch evaluations) as an uninterrupted run.

        Returns
        -------
        float
            The accuracy on the whole test set, also kept as ``final_test_acc``.
        """
        with _sigint.deferred_sigint() as critical:
            self._bar = (Progress(self.max_iter, "step", initial=self.current_iter)
                         if self.verbose else None)
            try:
                self._finish_pending_epoch(critical)
                self._loop.run(critical, lambda: self.current_iter >= self.max_iter,
                               after_step=None if self._bar is None else self._bar.update)
            finally:
                if self._bar is not None:
                    self._bar.close()
                self._bar = None

        if self._full_test_acc_at == self.current_iter:  # the last epoch just measured it
            test_acc = self.test_acc_list[-1]
        else:
            test_acc = self._accuracy(self.x_test, self.t_test)
        self.final_test_acc = test_acc
        if self.verbose and self.print_final_accuracy:
            print("=============== Final Test Accuracy ===============")
            print(f"test acc:{test_acc:.4f}")
        return test_acc
