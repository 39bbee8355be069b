"""scikit-learn estimators on fastmlp's compiled networks: ``MLPClassifier``, ``MLPRegressor``.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor``: the same parameter names and
meanings where they coincide, the same objective (mean log-loss or half
squared error, plus ``0.5 * alpha * sum(W**2) / batch_weight``), the same
Glorot-uniform initialisation, the same stopping rules (``tol`` /
``n_iter_no_change``, early stopping on a validation score) and warnings.
Each training step is one compiled forward/backward pass
(``MultiLayerNet.gradient``) and one compiled optimizer update.

What they add over sklearn's MLP:

- ``fit(X, y, sample_weight=None, *, X_val=None, y_val=None)``: your own
  validation set (for ``early_stopping`` or just to monitor);
  ``validation_loss_curve_`` beside ``loss_curve_``;
- ``partial_fit`` works with ``early_stopping`` (sklearn raises) and takes
  ``X_val``/``y_val``; like sklearn's it keeps the optimizer state (Adam
  moments, velocities) between calls;
- ``warm_start=True``: each ``fit`` runs at most ``max_iter`` more epochs,
  continuing from the parameters *and* the optimizer state (sklearn's
  warm-started ``fit`` keeps the parameters but starts a fresh optimizer);
- ``callbacks``: per-epoch hooks ``cb(estimator, epoch, logs)`` that may
  stop training; a progress bar when ``verbose=2``;
- ``dtype``: float32 input trains and predicts in float32;
- solvers 'momentum', 'nesterov', 'adagrad', 'rmsprop' (fastmlp's book
  optimizers) beside 'sgd' and 'adam';
- ``dropout`` and ``batch_norm``: the book's Dropout and BatchNormalization
  layers in every hidden layer (``fastmlp.MultiLayerNetExtend``).

Differences from sklearn's MLP, all deliberate:

- solver 'lbfgs' is sklearn's (``_estimator_lbfgs``) plus ``loss_curve_`` per iteration;
  sparse X (CSR/CSC) is densified a block of rows at a time (``_sparse_rows``);
- the output layers are sklearn's (``fastmlp._estimator_outputs``): softmax for more than
  two classes, one logistic unit for two (``coefs_[-1]`` has one column), a logistic unit
  per label for a multilabel indicator ``y``, exp for ``MLPRegressor(loss='poisson')``;
  their losses are computed from the logits, exact where sklearn clips probabilities
  to ``[eps, 1 - eps]`` (they differ only for logits beyond about +-36 in float64);
- random numbers come from a ``numpy.random.Generator`` (an int
  ``random_state`` seeds ``default_rng``; None, as in sklearn, draws from
  numpy's global random state, here one draw that seeds the Generator): the
  same seed gives a different (but reproducible) run than sklearn's;
- ``best_loss_`` is the lowest training loss also when ``early_stopping``
  (sklearn sets it to None);
- samples with zero weight are dropped before training (they contribute
  nothing to the objective; this keeps "zero weight == removed sample"
  exact);
- ``n_iter_`` counts the epochs of the last ``fit`` call (as sklearn >= 1.3);
  ``loss_curve_`` and ``t_`` keep growing across warm starts and
  ``partial_fit`` calls; ``t_`` counts the samples of every applied step, so
  also those of an epoch cut short by Ctrl-C or a ``DivergenceError``.

Data-parallel fit on MPI: ``fit(X, y, ..., comm=comm)`` (and ``partial_fit``) with an
mpi4py communicator, each rank passing its own shard (its ``X``, ``y``, ``sample_weight``
and, optionally, its part of ``X_val, y_val``); run under ``mpiexec -n K python -m mpi4py
script.py`` (needs ``pip install "fastmlp[mpi]"``). Every rank ends with the same model:
the one a single process gets on the union of the shards with the same global batches.
Rank 0's initial parameters are broadcast (and checked equal every epoch, CRC-32);
``classes_`` is the union of the ranks' labels; each epoch every rank shuffles its shard
(rank 0 with the estimator's generator, rank ``r`` with ``default_rng([seed, r, t_])``) and
global step ``s`` takes a share of every shard in proportion to its rows left, so that a
global batch holds exactly ``batch_size`` samples (``batch_size='auto'``: min(200, N), N
the total) and every row is used once per epoch; a rank with no rows in a step joins it
with zeros. The step's gradient and loss are exactly the global batch's (weighted mean,
L2 ``alpha / W`` with ``W`` the global batch weight): one in-place all-reduce of the packed
gradients. Epoch losses, validation scores (sums over every rank's validation rows),
stopping rules, schedules and ``t_`` (global samples) are the same on every rank; callbacks
run on every rank (one that stops stops all); only rank 0 prints. A one-rank job is today's
fit bit for bit. Ctrl-C is not caught under ``comm`` (``python -m mpi4py`` ends the job).

Failures and Ctrl-C (fit, partial_fit):

- a call that raises before training starts (invalid data or
  hyper-parameters, a network that cannot be built, Ctrl-C during
  validation) changes nothing: every input is validated and the new network,
  optimizer and attributes are built aside, then put in place at once;
- Ctrl-C during training stops it, warns "Training interrupted by user." and
  returns (as sklearn), and the model is exactly as after its last whole
  step: no update is half applied, ``t_`` and the optimizer state (Adam's
  step count) match the parameters, ``n_iter_``/``loss_curve_`` and the
  validation histories hold the completed epochs (an epoch's record is
  committed with its last step); with ``early_stopping`` a ``fit`` then
  restores the best parameters, as when it stops by itself.

Threads: a fit whose training step is small (matrix products under
``fastmlp.threads.SMALL_STEP_FLOPS``, e.g. digits' 64-100-10 at batch 200) runs numpy's BLAS
on one thread for its duration (restored afterwards; process-wide, as
threadpoolctl limits are), because handing such GEMMs to a thread pool costs
more than it saves; call ``fastmlp.set_num_threads(n)`` to choose yourself.
(numpy's OpenBLAS may round a GEMM differently on another thread count, so
fits on different thread counts can differ in the last bits.)

scikit-learn (>= 1.6) is an optional dependency: ``import fastmlp`` works
without it; creating an estimator then raises ``ImportError`` saying
``pip install fastmlp[sklearn]``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _estimator_outputs as _outputs
from ._estimator_base import BaseMLP
from ._estimator_lbfgs import check_stochastic
from ._estimator_params import ClassifierMixin, RegressorMixin, available_if
from ._sparse_rows import predict_rows
from ._typing import EpochCallback, FloatArray, MatrixLike, Seed

__all__ = ["MLPClassifier", "MLPRegressor"]

_Est = TypeVar("_Est", bound=BaseMLP)


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier on fastmlp's compiled kernels.

    Minimises the mean cross-entropy of a softmax output (one logistic unit for two
    classes, one per label for a multilabel indicator ``y``, as sklearn's) plus
    ``0.5 * alpha * sum(W**2) / batch_weight`` (sklearn's objective) with a
    stochastic solver or L-BFGS. Parameters follow ``sklearn.neural_network.MLPClassifier``.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
        Units of each hidden layer.
    activation : {'relu', 'logistic', 'tanh', 'identity'}, default 'relu'
        Hidden-layer activation ('logistic' is the sigmoid, 'identity' none), as sklearn's;
        the initial weights follow sklearn's rule (Glorot-uniform, the bound
        ``sqrt(2 / (fan_in + fan_out))`` for 'logistic', ``sqrt(6 / ...)`` otherwise).
    solver : {'adam', 'sgd', 'lbfgs', 'momentum', 'nesterov', 'adagrad', 'rmsprop'}, default 'adam'
        'adam': Kingma & Ba with ``beta_1``, ``beta_2``, ``epsilon`` (sklearn's
        update). 'sgd': plain SGD when ``momentum == 0``, else momentum, with
        Nesterov's correction when ``nesterovs_momentum`` (sklearn's rules).
        'momentum', 'nesterov', 'adagrad', 'rmsprop': fastmlp's book
        optimizers (``fastmlp.optimizers``; 'nesterov' is the book's form,
        AdaGrad/RMSprop use the book's eps 1e-7 and RMSprop decay 0.99).
        'lbfgs': scipy's L-BFGS-B on the whole set, no ``partial_fit`` (as sklearn).
    alpha : float, default 1e-4
        L2 strength; the penalty ``0.5 * alpha * sum(W**2)`` is divided by the
        mini-batch's total sample weight (its size when unweighted), as in sklearn.
    batch_size : int or 'auto', default 'auto'
        ``min(200, n_samples)`` when 'auto'; clipped to n_samples (with a warning).
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default 'constant'
        Step-size schedule for the non-Adam solvers (sklearn's meaning).
    learning_rate_init : float, default 1e-3
    power_t : float, default 0.5
        Exponent of 'invscaling'.
    max_iter : int, default 200
        Maximum epochs per ``fit`` call (also with ``warm_start``).
    shuffle : bool, default True
        Reshuffle the samples every epoch.
    random_state : None, int, numpy Generator or RandomState
        Seeds initialisation, shuffling and the validation split: an int seeds
        ``numpy.random.default_rng``; None (scikit-learn's convention) takes one
        draw from numpy's global random state, so ``np.random.seed(s)`` before
        ``fit`` repeats the fit; a Generator is used as it is; a RandomState is
        drawn from.
    tol : float, default 1e-4
    verbose : bool or int, default False
        True/1: scikit-learn's lines on stdout (``Iteration N, loss = X``,
        ``Validation score: X`` when a validation set is scored, the stopping
        message); 2: also a progress bar on stderr (terminal or notebook only).
    warm_start : bool, default False
        ``fit`` continues from the current parameters and optimizer state and
        runs at most ``max_iter`` further epochs.
    momentum : float in [0, 1], default 0.9
    nesterovs_momentum : bool, default True
    early_stopping : bool, default False
        Stop when the validation score (accuracy) has not improved by ``tol``
        for ``n_iter_no_change`` epochs, and keep the best parameters. The
        validation set is ``X_val, y_val`` when given to ``fit``, else a
        stratified ``validation_fraction`` of the training data (README: as sklearn's).
    validation_fraction : float in [0, 1), default 0.1
    beta_1, beta_2 : float in [0, 1), default 0.9, 0.999
    epsilon : float, default 1e-8
    n_iter_no_change : int or np.inf, default 10
    max_fun : int >= 1, default 15000
        'lbfgs' only: the most loss evaluations (scipy's ``maxfun``).
    dtype : {None, np.float32, np.float64}, default None
        Computation dtype; None: float32 for float32 X, else float64.
    callbacks : list of callables, optional
        ``cb(estimator, epoch, logs)`` after every epoch; ``logs`` holds
        'loss', 'lr' and, with a validation set, 'val_score' and 'val_loss'.
        Returning True stops training (``stop_training_`` becomes True).
    dropout : float in [0, 1), default 0.0
        Drop ratio of a ``Dropout`` after every hidden activation (sklearn's MLP
        has none): while training each hidden unit is zeroed with this
        probability (masks from a stream seeded by ``random_state``); ``predict``
        scales by ``1 - dropout``, as the book's layer does. 0: no dropout layers.
    batch_norm : bool, default False
        A ``BatchNormalization`` between every hidden Affine and its activation
        (sklearn's MLP has none): batch statistics while training, running
        statistics (momentum 0.9) in ``predict``. The network is then a
        ``fastmlp.MultiLayerNetExtend``; a data-parallel fit (``comm``) and
        ``fastmlp.save`` do not take it yet (pickling does).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    loss_ : float
        Training loss of the last epoch.
    best_loss_ : float
        Lowest training loss so far.
    loss_curve_ : list of float
        Mean mini-batch loss (weighted by batch weight) per epoch, over all
        fit/partial_fit calls since the model was (re)initialised ('lbfgs': per iteration).
    validation_scores_ : list of float or None
        Accuracy on the validation set per epoch (when there is one).
    validation_loss_curve_ : list of float or None
        Mean cross-entropy (no L2 penalty) on the validation set per epoch.
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last call ('lbfgs': iterations, ``min(nit, max_iter)``).
    t_ : int
        Training samples seen (sklearn's meaning), counted with each applied step.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        When X has string column names.
    n_outputs_ : int
        Output units: the number of classes (labels), 1 for two classes.
    n_layers_ : int
    out_activation_ : str
        'softmax', or 'logistic' for two classes and multilabel ``y``.
    coefs_, intercepts_ : list of ndarray
        Views of the network's parameters; as sklearn's lists, assigning an item or the
        whole list (shapes fixed) replaces the values (``fastmlp._estimator_layers``).
    stop_training_ : bool
        The last call ended on a stopping rule, a callback or (``early_stopping``)
        a divergence. ``partial_fit`` loops should check it (with ``early_stopping``
        the best parameters have then been restored).
    """

    _loss_name = "cross_entropy"

    def fit(self: _Est, X: MatrixLike, y: ArrayLike, sample_weight: ArrayLike | None = None, *,
            X_val: MatrixLike = None, y_val: ArrayLike | None = None, comm: Any = None) -> _Est:
        """Train on (X, y) for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels of any type sklearn accepts (ints, strings, ...), or a 0/1
            multilabel indicator matrix.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights; integer weights are equivalent to repeated rows.
        X_val, y_val : array-like, optional, keyword-only
            Validation set: scored every epoch (``validation_scores_``,
            ``validation_loss_curve_``) and, with ``early_stopping``, used
            instead of an internal split.
        comm : mpi4py communicator, optional
            Data-parallel fit over its ranks, each passing its own shard (module docstring).

        Returns
        -------
        self

        Notes
        -----
        Transactional: if the call raises before training starts (bad input,
        a network that cannot be built), the estimator is unchanged — a fitted
        one keeps its ``classes_``, parameters, optimizer state and histories.
        Ctrl-C during training stops it with a warning and returns ``self``,
        the model as after its last whole step (module docstring).
        """
        return self._fit(X, y, sample_weight, X_val, y_val, incremental=False, comm=comm)

    @available_if(check_stochastic)
    def partial_fit(self: _Est, X: MatrixLike, y: ArrayLike,
                    sample_weight: ArrayLike | None = None, classes: ArrayLike | None = None, *,
                    X_val: MatrixLike = None, y_val: ArrayLike | None = None,
                    comm: Any = None) -> _Est:
        """One epoch over (X, y), keeping the parameters and the optimizer state.

        Parameters
        ----------
        X, y : as in ``fit``
        sample_weight : array-like of shape (n_samples,), optional
        classes : array-like, required on the first call
            All class labels across the calls.
        X_val, y_val : array-like, optional, keyword-only
            Validation set; with ``early_stopping`` and none given, a
            ``validation_fraction`` of this chunk is held out.

        Returns
        -------
        self

        Notes
        -----
        As ``fit``: nothing changes if the call raises before training; Ctrl-C
        during the epoch stops it with a warning, keeping its whole steps.
        """
        return self._fit(X, y, sample_weight, X_val, y_val, incremental=True, classes=classes,
                         comm=comm)

    def predict(self, X: MatrixLike) -> np.ndarray:
        """Class labels, shape (n_samples,); the 0/1 indicator (n_samples, n_labels) for a
        multilabel model."""
        return _outputs.class_predictions(self, self._forward(X))

    def predict_proba(self, X: MatrixLike) -> FloatArray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order
        (two columns ``[1 - p, p]`` for a binary model, one per label for a multilabel one)."""
        return _outputs.class_probabilities(self, self._forward(X))

    def predict_log_proba(self, X: MatrixLike) -> FloatArray:
        """``log(predict_proba(X))``."""
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    # -- targets
    def _y_check_params(self):
        return {"multi_output": True}  # 2-D y gets the clear error of _encode_targets

    def _encode_targets(self, y, first_pass, incremental, classes, dtype, dist=None):
        y, multilabel, known, out = _outputs.class_targets(self, y, first_pass, incremental,
                                                           classes, dist)
        n_outputs = len(known) if multilabel or out == "softmax" else 1
        targets = _outputs.encode_classes(y, multilabel, known, out, dtype)
        return targets, (known, out, n_outputs)

    def _encode_val_targets(self, y_val, n, target_info, dtype):
        from sklearn.utils.validation import column_or_1d
        known, out, n_outputs = target_info
        multilabel = out == "logistic" and n_outputs > 1
        y_val = np.asarray(y_val)
        if not multilabel:
            y_val = column_or_1d(y_val, warn=True)
        if y_val.shape[0] != n:
            raise ValueError(f"y_val has {y_val.shape[0]} labels but X_val has {n} rows")
        return _outputs.encode_classes(y_val, multilabel, known, out, dtype, "y_val")

    def _target_state(self, target_info):
        known, out, n_outputs = target_info
        return {"classes_": known, "n_outputs_": n_outputs, "out_activation_": out}

    def _evaluate(self, val):
        """(accuracy, mean log-loss) on the validation set (multilabel: subset accuracy)."""
        scores = predict_rows(self._net, val.X)
        if not np.isfinite(scores).all():
            return np.nan, np.nan
        correct, loss = _outputs.class_rows(scores, val.y)
        if val.w is None:
            return float(correct.mean()), float(loss.mean())
        w = val.w / val.w.sum()
        return float(np.dot(w, correct)), float(np.dot(w, loss))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor on fastmlp's compiled kernels.

    Minimises half the mean squared error (averaged over samples and
    outputs, as sklearn's ``loss_curve_`` reports it) plus
    ``0.5 * alpha * sum(W**2) / batch_weight``, with an identity output; or with
    ``loss='poisson'`` half the Poisson deviance (summed over the outputs, averaged over
    the samples, as sklearn's) with an exp output (log link; ``y`` must be >= 0).
    Parameters and attributes as :class:`MLPClassifier`; ``validation_scores_`` holds R²
    and ``validation_loss_curve_`` the data loss as ``loss_curve_`` counts it.
    """

    _loss_name = "mse"

    def __init__(self, loss: str = "squared_error",
                 hidden_layer_sizes: int | Sequence[int] = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Seed = None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int = 10, max_fun: int = 15000, dtype: DTypeLike | None = None,
                 callbacks: Sequence[EpochCallback] | None = None, dropout: float = 0.0,
                 batch_norm: bool = False) -> None:
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         dtype=dtype,
                         callbacks=callbacks, dropout=dropout, batch_norm=batch_norm)
        self.loss = loss

    def _checked_params(self):
        if self.loss not in _outputs.REGRESSION_LOSSES:
            raise ValueError(f"loss must be one of {list(_outputs.REGRESSION_LOSSES)}, "
                             f"got {self.loss!r}")
        return super()._checked_params()

    def fit(self: _Est, X: MatrixLike, y: ArrayLike, sample_weight: ArrayLike | None = None, *,
            X_val: MatrixLike = None, y_val: ArrayLike | None = None, comm: Any = None) -> _Est:
        """Train on (X, y) for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), optional
        X_val, y_val : array-like, optional, keyword-only
            Validation set (R² per epoch; used by ``early_stopping``).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, X_val, y_val, incremental=False, comm=comm)

    @available_if(check_stochastic)
    def partial_fit(self: _Est, X: MatrixLike, y: ArrayLike,
                    sample_weight: ArrayLike | None = None, *, X_val: MatrixLike = None,
                    y_val: ArrayLike | None = None, comm: Any = None) -> _Est:
        """One epoch over (X, y), keeping the parameters and the optimizer state.

        As ``MLPClassifier.partial_fit`` (without ``classes``): nothing changes if
        the call raises before training; Ctrl-C keeps the epoch's whole steps.
        """
        return self._fit(X, y, sample_weight, X_val, y_val, incremental=True, comm=comm)

    def predict(self, X: MatrixLike) -> FloatArray:
        """Predictions, shape (n_samples,) for one output, else (n_samples, n_outputs)."""
        out = _outputs.regression_outputs(self, self._forward(X))
        return out.ravel() if out.shape[1] == 1 else out

    # -- targets
    def _y_check_params(self):
        return {"multi_output": True, "y_numeric": True}

    def _encode_targets(self, y, first_pass, incremental, classes, dtype, dist=None):
        from sklearn.utils.validation import column_or_1d
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        loss = _outputs.REGRESSION_LOSSES[self.loss]
        if not first_pass and loss != self._net.loss_name:
            raise ValueError(f"loss={self.loss!r} differs from the loss the network was built "
                             f"for; continuing (warm_start / partial_fit) needs the same loss. "
                             f"Set warm_start=False to start over.")
        targets = _outputs.regression_targets(y, loss, dtype)
        n_outputs = targets.shape[1]
        if not first_pass and n_outputs != self.n_outputs_:
            raise ValueError(f"y has {n_outputs} outputs but the model was fitted with "
                             f"{self.n_outputs_}")
        return targets, (n_outputs, _outputs.OUT_ACTIVATIONS[loss])

    def _encode_val_targets(self, y_val, n, target_info, dtype):
        from sklearn.utils.validation import check_array
        n_outputs, out = target_info
        y_val = check_array(y_val, ensure_2d=False, dtype=dtype, input_name="y_val")
        y_val = _outputs.regression_targets(y_val, _outputs.NETWORK_LOSS[out], dtype, "y_val")
        if y_val.shape != (n, n_outputs):
            raise ValueError(f"y_val must have shape {(n, n_outputs)}, got {y_val.shape}")
        return y_val

    def _target_state(self, target_info):
        n_outputs, out = target_info
        return {"n_outputs_": n_outputs, "out_activation_": out}

    def _evaluate(self, val):
        """(R², the data loss as ``loss_curve_`` counts it) on the validation set."""
        from sklearn.metrics import r2_score
        scores = predict_rows(self._net, val.X)
        pred = _outputs.regression_outputs(self, scores)
        if not np.isfinite(pred).all():
            return np.nan, np.nan
        rows = _outputs.regression_rows(self, scores, val.y)
        val_loss = float(rows.mean()) if val.w is None else float(np.average(rows, weights=val.w))
        return float(r2_score(val.y, pred, sample_weight=val.w)), val_loss

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
