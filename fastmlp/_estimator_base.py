"""The machinery shared by fastmlp's ``MLPClassifier`` and ``MLPRegressor``: building the
network and optimizer, validating a fit's data and committing its new state at once (so a
failing fit changes nothing), then training on the one loop (``_estimator_epochs``)."""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
from numpy.typing import DTypeLike

from . import _estimator_outputs as _outputs
from . import _estimator_record as _record
from . import _sigint, threads
from . import optimizers as _optim
from ._estimator_epochs import FitEpochs
from ._estimator_layers import layer_attribute
from ._estimator_lbfgs import LbfgsFit
from ._estimator_params import FEATURE_ATTRS, BaseEstimator, as_weights, checked_params, make_rng
from ._sparse_rows import as_row_sparse, is_sparse, predict_rows
from ._typing import EpochCallback, Seed
from .networks import MultiLayerNet
from .networks_extend import MultiLayerNetExtend, extensions


_Est = TypeVar("_Est", bound="BaseMLP")


class Data:
    """One training or validation set, converted once: X (C-contiguous, model dtype), targets, weights."""

    def __init__(self, X: Any, y: np.ndarray, weights: np.ndarray | None) -> None:
        self.X, self.y, self.w = X, y, weights
        self.n = X.shape[0]


# ----------------------------------------------------------------------------- the estimators

class BaseMLP(BaseEstimator):
    """Shared machinery of MLPClassifier and MLPRegressor (not for direct use)."""

    _loss_name = None        # the family's first output: 'cross_entropy' | 'mse'

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,), activation: str = "relu",
                 *, solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Seed = None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: int = 10, max_fun: int = 15000, dtype: DTypeLike | None = None,
                 callbacks: Sequence[EpochCallback] | None = None, dropout: float = 0.0,
                 batch_norm: bool = False) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.callbacks = callbacks
        self.dropout = dropout
        self.batch_norm = batch_norm

    # -- parameters ------------------------------------------------------------

    def _checked_params(self):
        """Every hyper-parameter validated (ValueError/TypeError naming it), before any state changes."""
        return checked_params(self)

    # -- data ------------------------------------------------------------------

    def _validate_X(self, X, dtype, reset, y=None, est=None):
        """X (and y) through sklearn's validate_data: 2-D, finite, ``dtype``; C-contiguous, or
        scipy.sparse as CSR (CSR and CSC accepted, as sklearn's MLP; ``_sparse_rows``).

        ``est`` (default self) is the estimator validate_data checks against and, with
        ``reset``, records ``n_features_in_``/``feature_names_in_`` on."""
        from sklearn.utils.validation import validate_data
        est = self if est is None else est
        if dtype is None:
            dtype = (np.float64, np.float32)
        kw = dict(reset=reset, dtype=dtype, order="C", accept_sparse=["csr", "csc"])
        if y is None:
            X = validate_data(est, X, **kw)
        else:
            X, y = validate_data(est, X, y, **kw, **self._y_check_params())
        if is_sparse(X):
            X = as_row_sparse(X)
        return X if y is None else (X, y)

    def _stand_in(self):
        """A shallow stand-in of this estimator without its feature attributes: fit validates
        new data on it, so that nothing of self changes before the fit's commit."""
        probe = object.__new__(type(self))
        probe.__dict__.update({k: v for k, v in self.__dict__.items()
                               if k not in FEATURE_ATTRS})
        return probe

    def _model_dtype(self, X_dtype, params):
        if params["dtype"] is not None:
            return params["dtype"]
        return np.float32 if X_dtype == np.float32 else np.float64

    # -- the network -------------------------------------------------------------

    def _build_network(self, n_features, n_outputs, params, dtype, rng, loss):
        """A compiled MultiLayerNet with output ``loss`` and sklearn's Glorot-uniform
        initialisation drawn from ``rng`` (a MultiLayerNetExtend with ``dropout`` > 0 or
        ``batch_norm``: its masks from a stream seeded by ``rng`` after the weights)."""
        extend = params["dropout"] > 0 or params["batch_norm"]
        if extend:
            net = MultiLayerNetExtend(n_features, params["hidden"], n_outputs,
                                      activation=params["activation"], weight_init_std=0.0,
                                      use_dropout=params["dropout"] > 0,
                                      dropout_ration=params["dropout"],
                                      use_batchnorm=params["batch_norm"], dtype=dtype, seed=0,
                                      loss=loss)
        else:
            net = MultiLayerNet(n_features, params["hidden"], n_outputs,
                                activation=params["activation"], weight_init_std=0.0,
                                weight_decay_lambda=0.0, dtype=dtype, seed=0, loss=loss)
        factor = 2.0 if params["activation"] == "sigmoid" else 6.0
        sizes = [n_features, *params["hidden"], n_outputs]
        for i, (fan_in, fan_out) in enumerate(pairwise(sizes), start=1):
            bound = math.sqrt(factor / (fan_in + fan_out))
            net.params[f"W{i}"][...] = rng.uniform(-bound, bound, (fan_in, fan_out))
            net.params[f"b{i}"][...] = rng.uniform(-bound, bound, fan_out)
        if extend:
            net.set_stream(np.random.default_rng(rng.integers(0, 2**63)))
        return net

    def _make_optimizer(self, params):
        if self.solver == "lbfgs":
            return None   # scipy's L-BFGS-B keeps no state between fits (``_estimator_lbfgs``)
        lr, solver, momentum = params["lr"], self.solver, params["momentum"]
        if solver == "adam":
            return _optim.Adam(lr, params["beta_1"], params["beta_2"], eps=params["epsilon"])
        if solver == "sgd":
            if momentum == 0:
                return _optim.SGD(lr)
            if self.nesterovs_momentum:
                return _optim.Nesterov(lr, momentum, variant="sklearn")
            return _optim.Momentum(lr, momentum)
        if solver == "momentum":
            return _optim.Momentum(lr, momentum)
        if solver == "nesterov":
            return _optim.Nesterov(lr, momentum)
        if solver == "adagrad":
            return _optim.AdaGrad(lr)
        return _optim.RMSprop(lr)

    def _make_schedule(self, params):
        """sklearn's learning-rate schedule (Adam's rate stays constant, as in sklearn)."""
        if self.solver == "adam" or self.learning_rate == "constant":
            return _optim.ConstantLR()
        if self.learning_rate == "invscaling":
            return _optim.InverseScalingLR(params["lr"], params["power_t"])
        return _optim.AdaptiveLR()

    def _optimizer_key(self):
        """What decides the optimizer class: a change (via set_params) starts a fresh optimizer."""
        return (self.solver, bool(self.nesterovs_momentum) if self.solver == "sgd" else None,
                self.momentum == 0 if self.solver == "sgd" else None)

    def _next_optimizer(self, params, first_pass, incremental):
        """``(optimizer, changes)``: a new optimizer (``changes`` None), or the current one
        (kept with its state) and the hyper-parameters to set on it (``{attribute: value}``),
        applied by the fit's commit."""
        if first_pass or getattr(self, "_optimizer", None) is None or \
                self._opt_key != self._optimizer_key():
            return self._make_optimizer(params), None
        opt = self._optimizer
        changes = {}
        if hasattr(opt, "momentum"):
            changes["momentum"] = params["momentum"]
        if self.solver == "adam":
            changes.update(beta1=params["beta_1"], beta2=params["beta_2"], eps=params["epsilon"])
        lr = params["schedule"].start_lr(params["lr"], self.t_, incremental)
        if lr is not None:
            changes["lr"] = lr
        return opt, changes

    coefs_ = layer_attribute(
        "W", "coefs_", "Weight matrices, ``coefs_[i]`` of shape (units[i], units[i+1]): views of "
        "the network's parameters; editing them in place, assigning an item or the whole list "
        "(shapes fixed) changes the model (``fastmlp._estimator_layers``).")
    intercepts_ = layer_attribute(
        "b", "intercepts_", "Bias vectors, ``intercepts_[i]`` of shape (units[i+1],), as "
        "``coefs_``.")

    # -- fitting -----------------------------------------------------------------

    def _fit(self, X, y, sample_weight, X_val, y_val, incremental, classes=None, comm=None):
        """Validate everything and build the new state in locals, commit it in one critical
        section, then train. A failure before the commit changes nothing; Ctrl-C after it stops
        training with the model as of its last whole step (see ``fit``). With ``comm`` a
        data-parallel fit over its ranks (``_distributed_fit``): a failure before training
        raises on every rank, and Ctrl-C is not caught (a rank that stopped alone would
        leave the others waiting in a collective; ``python -m mpi4py`` ends the job)."""
        dist = None
        if comm is not None:
            from ._distributed_fit import FitComm
            dist = FitComm(comm)
        guard = _sigint.deferred_sigint()
        with guard as critical:
            try:
                prepared = self._prepare_fit(X, y, sample_weight, X_val, y_val, incremental,
                                             classes, dist)
            except Exception as exc:
                if dist is not None:
                    dist.failed(exc)
                raise
            state, opt, opt_changes, train, val, params, step_flops = prepared
            limit = threads.blas_threads_for_step(step_flops)
            committed = False
            try:
                with critical:   # every visible change of the fit's start, all at once
                    if "n_features_in_" in state:
                        for k in FEATURE_ATTRS:
                            self.__dict__.pop(k, None)
                    self.__dict__.update(state)
                    for name, value in opt_changes.items():
                        setattr(opt, name, value)
                    committed = True
                    # the BLAS limit: taken here, given back when the guard ends, whatever
                    # a Ctrl-C interrupts
                    limit.__enter__()
                    guard.on_exit(lambda: limit.__exit__(None, None, None))
                self._run_epochs(train, val, params, incremental, critical, dist)
            except KeyboardInterrupt:
                if not committed or dist is not None:
                    raise
                warnings.warn("Training interrupted by user.")
        return self

    def _prepare_fit(self, X, y, sample_weight, X_val, y_val, incremental, classes, dist=None):
        """Everything ``_fit`` needs, validated and built without changing self: the new
        attributes (a dict), the optimizer and the hyper-parameters to set on it, the data."""
        params = self._checked_params()
        params["schedule"] = self._make_schedule(params)
        if y is None:
            raise ValueError(f"This {type(self).__name__} estimator requires y to be passed, "
                             f"but the target y is None.")
        fitted = getattr(self, "_net", None) is not None
        first_pass = not fitted or (not self.warm_start and not incremental)
        if (X_val is None) != (y_val is None):
            raise ValueError("pass both X_val and y_val, or neither")
        if not first_pass and (params["hidden"] != self._net.hidden_size_list
                               or params["activation"] != self._net.activation
                               or (params["dropout"], params["batch_norm"])
                               != extensions(self._net)):
            raise ValueError("hidden_layer_sizes, activation, dropout or batch_norm changed "
                             "since the network was built; continuing (warm_start / "
                             "partial_fit) needs the same architecture. Set warm_start=False "
                             "to start over.")
        if dist is not None and (params["dropout"] > 0 or params["batch_norm"]):
            raise ValueError("dropout and batch_norm are not available in a data-parallel fit "
                             "(comm=...)")
        lbfgs = self.solver == "lbfgs"
        if lbfgs and (params["dropout"] > 0 or params["batch_norm"]):
            raise ValueError("dropout and batch_norm are not available with solver='lbfgs' "
                             "(a deterministic full-batch objective)")
        if dist is not None and (lbfgs or is_sparse(X)):
            raise ValueError("solver='lbfgs' and sparse X are not available in a data-parallel "
                             "fit (comm=...)")

        # ---- validate everything: validate_data(reset=True) records n_features_in_ and
        # feature_names_in_ on the estimator it checks, so a first pass checks a stand-in
        probe = self._stand_in() if first_pass else self
        dtype = None if first_pass else self._dtype
        if first_pass and params["dtype"] is not None:
            dtype = params["dtype"]
        X, y = self._validate_X(X, dtype, reset=first_pass, y=y, est=probe)
        dtype = self._model_dtype(X.dtype, params) if first_pass else self._dtype
        targets, target_info = self._encode_targets(y, first_pass, incremental, classes, dtype,
                                                    dist)
        weights = None
        if sample_weight is not None:
            weights = as_weights(sample_weight, X.shape[0], dtype)
        val = None
        if X_val is not None:
            X_val = self._validate_X(X_val, dtype, reset=False, est=probe)
            y_val = self._encode_val_targets(y_val, X_val.shape[0], target_info, dtype)
            val = Data(X_val, y_val, None)
        # the validation split and the training samples
        if first_pass:
            rng = make_rng(self.random_state)
            split_seed = int(rng.integers(2**31 - 1))
        else:
            rng, split_seed = self._rng, self._split_seed
        train = Data(X, targets, weights)
        if val is None and self.early_stopping and not lbfgs:   # sklearn's lbfgs: all data
            train, val = self._split_validation(
                train, params, split_seed if dist is None else dist.rank_seed(split_seed),
                target_info)
        if train.w is not None:
            keep = train.w > 0
            if not keep.all():  # zero-weight samples contribute nothing: drop them
                train = Data(train.X[keep], train.y[keep], train.w[keep])
            if train.n == 0 and dist is None:
                raise ValueError("no training samples with non-zero sample_weight remain "
                                 "after the validation split")
            if dist is None and np.all(train.w == train.w[0]):
                train.w = None  # uniform weights: the same objective as no weights

        # ---- the new state, built in locals
        state = {"n_iter_": 0, "stop_training_": False}
        if first_pass:
            state.update(self._fresh_fit_state(target_info, dtype, params, X.shape[1], rng,
                                               split_seed))
            state.update({k: probe.__dict__[k] for k in FEATURE_ATTRS if k in probe.__dict__})
        elif not incremental:
            state["_no_improvement_count"] = 0   # a warm-started fit gets its own patience
        opt, opt_changes = self._next_optimizer(params, first_pass, incremental)
        if opt_changes is None:
            state["_optimizer"], state["_opt_key"], opt_changes = opt, self._optimizer_key(), {}
        if val is not None and (first_pass or self.validation_scores_ is None):
            state.update(validation_scores_=[], validation_loss_curve_=[],
                         best_validation_score_=-np.inf)
        net = state.get("_net", self.__dict__.get("_net"))
        sizes = [net.input_size, *net.hidden_size_list, net.output_size]
        n = train.n
        if dist is not None:   # the ranks agree, then rank 0's parameters go to all
            settings = repr((sizes, np.dtype(dtype).str, first_pass, incremental, sorted(
                (k, v) for k, v in self.get_params().items() if k not in ("callbacks", "verbose", "random_state"))))
            train = dist.agree(self, train, val, settings, split_seed)
            dist.broadcast(net, first_pass)
            n = dist.n_total
        step_flops = 6.0 * self._batch_size(params, n, warn=False) * sum(
            a * b for a, b in pairwise(sizes))
        return state, opt, opt_changes, train, val, params, step_flops

    def _fresh_fit_state(self, target_info, dtype, params, n_features, rng, split_seed):
        """The attributes of a model started from scratch (a new network), as a dict."""
        state = self._target_state(target_info)   # n_outputs_, out_activation_ (classes_)
        loss = _outputs.NETWORK_LOSS[state["out_activation_"]]
        state.update({
            "_dtype": dtype, "_rng": rng, "_split_seed": split_seed,
            "_net": self._build_network(n_features, state["n_outputs_"], params, dtype, rng,
                                        loss),
            "_optimizer": None,
            "n_layers_": len(params["hidden"]) + 2,
            "n_iter_": 0, "t_": 0, "loss_": None, "loss_curve_": [], "best_loss_": np.inf,
            "validation_scores_": None, "validation_loss_curve_": None,
            "best_validation_score_": None, "stop_training_": False,
            "_no_improvement_count": 0, "_best_params": None,
        })
        return state

    def _split_validation(self, train, params, split_seed, target_info):
        """``(train, validation)`` for early stopping: a ``validation_fraction`` of ``train``,
        stratified for a classifier. As in sklearn, which stratifies two classes only, a
        binary split that cannot be stratified raises; with more classes fastmlp stratifies
        when it can and otherwise splits at random (as sklearn always does)."""
        from sklearn.model_selection import train_test_split
        arrays = [train.X, train.y] + ([train.w] if train.w is not None else [])
        fraction = params["validation_fraction"]
        stratify = None
        if self._loss_name == "cross_entropy" and (train.y.ndim == 1 or train.y.shape[1] == 1):
            classes = target_info[0]   # a classifier's (classes, out_activation, n_outputs)
            labels = train.y.reshape(-1).astype(np.intp)   # multilabel: not stratified (sklearn)
            counts = np.bincount(labels, minlength=len(classes))
            present = counts > 0
            if len(classes) == 2 and counts[present].min() < 2:
                rare = classes[np.flatnonzero(present & (counts < 2))].tolist()
                raise ValueError(
                    f"The least populated class in y has only 1 member, which is too few: "
                    f"early_stopping holds out a stratified validation_fraction={fraction} of "
                    f"the training data (scikit-learn's rule for two classes), which needs 2 "
                    f"members of each class. Classes with too few members: {rare}. Pass "
                    f"X_val and y_val, or set early_stopping=False.")
            if counts[present].min() >= 2:
                stratify = labels

        def split(stratify):
            try:
                return train_test_split(*arrays, test_size=fraction, random_state=split_seed,
                                        stratify=stratify)
            except ValueError as exc:
                raise ValueError(f"could not split a validation set (validation_fraction="
                                 f"{fraction}) off {train.n} samples for early_stopping: "
                                 f"{exc}") from None

        try:
            parts = split(stratify)
        except ValueError:
            if stratify is None or len(classes) == 2:
                raise
            parts = split(None)   # more than two classes: sklearn never stratifies them
        if parts[1].shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset, or pass X_val and y_val.")
        X_tr, X_va, y_tr, y_va = (p if is_sparse(p) else np.ascontiguousarray(p)
                                  for p in parts[:4])
        w_tr = w_va = None
        if train.w is not None:
            w_tr, w_va = parts[4], parts[5]
        return Data(X_tr, y_tr, w_tr), Data(X_va, y_va, w_va)

    def _batch_size(self, params, n, warn=True):
        if params["batch_size"] == "auto":
            return min(200, n)
        if params["batch_size"] > n and warn:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                          "It is going to be clipped")
        return min(params["batch_size"], n)

    def _run_epochs(self, train, val, params, incremental, critical, dist=None):
        """The fit call's epochs on fastmlp's one training loop (``_estimator_epochs``)."""
        if self.solver == "lbfgs":
            LbfgsFit(self, train, val, params).run(critical)
            return
        epochs = (FitEpochs(self, train, val, params, incremental) if dist is None
                  else dist.epochs(self, train, val, params, incremental))
        epochs.run(critical)

    def _save_best(self):
        if self._best_params is None:
            self._best_params = {k: v.copy() for k, v in self._net.params.items()}
        else:
            for k, v in self._net.params.items():
                np.copyto(self._best_params[k], v)

    def _restore_best(self):
        for k, v in self._best_params.items():
            np.copyto(self._net.params[k], v)

    # -- prediction ----------------------------------------------------------------

    def _check_fitted(self):
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(self)
        if getattr(self, "_net", None) is None:  # pragma: no cover - fitted attributes set by hand
            from sklearn.exceptions import NotFittedError
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet.")

    def _forward(self, X):
        """Network outputs (logits or predictions) for validated X, in the model dtype."""
        self._check_fitted()
        X = self._validate_X(X, self._dtype, reset=False)
        return predict_rows(self._net, X)

    # -- persistence (pickle and fastmlp.save) ---------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        return _record.pickled_state(state)

    def __setstate__(self, state: dict[str, Any]) -> None:
        state, net_state = _record.split_pickled_state(state)
        if hasattr(super(), "__setstate__"):
            super().__setstate__(state)
        else:  # pragma: no cover
            self.__dict__.update(state)
        _record.restore_unpickled(self, net_state)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def to_record(self, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """The fitted estimator as a JSON-able record, its arrays added to ``arrays``
        (``fastmlp.save``; the format is in ``fastmlp._estimator_record``)."""
        return _record.to_record(self, arrays)

    @classmethod
    def check_record(cls, rec: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Check a record read by ``fastmlp.load`` before anything is allocated; returns the
        arrays it needs, ``{name: (dtype or None, shape or None)}``."""
        return _record.check_record(cls, rec)

    @classmethod
    def from_record(cls: type[_Est], rec: dict[str, Any],
                    arrays: dict[str, np.ndarray]) -> _Est:
        """The estimator a checked record and its arrays describe (``fastmlp.load``)."""
        return _record.from_record(cls, rec, arrays)
