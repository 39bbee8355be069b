"""The estimators' output layers, as scikit-learn's MLP chooses them (``out_activation_``):
how ``y`` is encoded for the network's loss, and how the network's scores (its logits)
become predictions, probabilities and validation scores.

- classifier, more than two classes: 'softmax' (the network's loss 'cross_entropy') on
  class indices;
- classifier, one or two classes: one 'logistic' unit (loss 'logistic', binary
  cross-entropy) whose target is 1 for ``classes_[1]``; ``predict_proba`` gives
  ``[1 - p, p]``;
- classifier, a multilabel indicator ``y`` (2-D 0/1): one 'logistic' unit per label,
  ``classes_`` = ``arange(n_labels)``, ``predict`` the indicator matrix;
- regressor: 'identity' (loss 'mse'), or 'exp' (loss 'poisson', half the Poisson
  deviance, ``y >= 0``) for ``loss='poisson'``.
"""
import numpy as np

from ._estimator_params import log_softmax

#: scikit-learn's ``out_activation_`` of each network loss, and back
OUT_ACTIVATIONS = {"cross_entropy": "softmax", "mse": "identity", "logistic": "logistic",
                   "poisson": "exp"}
NETWORK_LOSS = {out: loss for loss, out in OUT_ACTIVATIONS.items()}
REGRESSION_LOSSES = {"squared_error": "mse", "poisson": "poisson"}   # MLPRegressor(loss=)


# ----------------------------------------------------------------------------- classifier

def class_targets(est, y, first_pass, incremental, classes, dist=None):
    """``(y, multilabel, known classes, out_activation)`` for a classifier's fit, checked
    against the fitted model when continuing (warm_start, partial_fit)."""
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import column_or_1d
    if y.ndim == 2 and y.shape[1] == 1:
        y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    multilabel = y.ndim == 2
    if multilabel and type_of_target(y) != "multilabel-indicator":
        raise ValueError(f"multi-output (multiclass-multioutput) targets are not supported: y "
                         f"must be 1-D class labels or a 0/1 multilabel indicator matrix, got "
                         f"{type_of_target(y)!r} of shape {y.shape}")
    if incremental and classes is not None and not multilabel:
        classes = unique_labels(np.asarray(classes))
        if not first_pass and not np.array_equal(classes, est.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {est.classes_!r}")   # sklearn's wording
    if not first_pass:
        was_multilabel = est.out_activation_ == "logistic" and est.n_outputs_ > 1
        if multilabel != was_multilabel:
            raise ValueError(f"y is {'a multilabel indicator' if multilabel else 'class labels'}"
                             f" but the model was fitted on "
                             f"{'a multilabel indicator' if was_multilabel else 'class labels'}")
        known = est.classes_
        if est.warm_start and not incremental:
            seen = unique_labels(y)
            if dist is not None:
                seen = dist.union_labels(seen)
            if not np.array_equal(seen, known):
                raise ValueError(f"warm_start can only be used where `y` has the same classes "
                                 f"as in the previous call to fit. Previously got {known}, "
                                 f"`y` has {seen}")
        return y, multilabel, known, est.out_activation_
    if incremental and not multilabel:
        if classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        known = classes
        if dist is not None:
            dist.same_classes(known)
    else:
        known = unique_labels(y)
        if dist is not None:   # the classes of every rank's shard
            known = dist.union_labels(known)
    return y, multilabel, known, ("logistic" if multilabel or len(known) <= 2 else "softmax")


def encode_classes(y, multilabel, classes, out_activation, dtype, name="y"):
    """The network's targets: class indices (intp) for 'softmax', else float 0/1 rows of
    ``dtype`` (binary: (N, 1), 1 for ``classes[1]``; multilabel: the indicator)."""
    if multilabel:
        if y.ndim != 2 or y.shape[1] != len(classes):
            raise ValueError(f"{name} must be a multilabel indicator of {len(classes)} "
                             f"columns, got shape {y.shape}")
        y = np.asarray(y)
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"{name} must hold only 0 and 1 in a multilabel indicator")
        return np.ascontiguousarray(y, dtype=dtype)
    labels = labels_of(y, classes, name)
    if out_activation == "softmax":
        return labels
    return (labels == 1).astype(dtype).reshape(-1, 1)


def labels_of(y, classes, name):
    """The index in ``classes`` of every label of ``y`` (intp); ValueError for unseen ones."""
    y = np.asarray(y)
    try:
        idx = np.searchsorted(classes, y)
        idx_clipped = np.minimum(idx, len(classes) - 1)
        bad = np.asarray(classes[idx_clipped] != y)
    except TypeError:  # e.g. numbers against string classes
        raise ValueError(f"{name} labels ({y.dtype}) cannot be compared with classes_ "
                         f"{classes!r}") from None
    if bad.shape != y.shape:
        bad = np.ones(y.shape, bool)
    if np.any(bad):
        raise ValueError(f"`{name}` has classes not in `self.classes_`. `self.classes_` has "
                         f"{classes}. '{name}' has {np.unique(y)}.")   # sklearn's wording
    return np.ascontiguousarray(idx_clipped, dtype=np.intp)


def class_predictions(est, scores):
    """``predict`` from the network's scores, as scikit-learn's label binarizer inverts."""
    if est.out_activation_ == "softmax":
        return est.classes_[scores.argmax(axis=1)]
    p = class_probabilities(est, scores)
    if est.n_outputs_ > 1:   # multilabel: the indicator matrix
        return (p > 0.5).astype(int)
    if len(est.classes_) == 1:
        return np.repeat(est.classes_, len(p))
    return est.classes_[(p[:, 1] > 0.5).astype(np.intp)]


def class_probabilities(est, scores):
    """``predict_proba``: softmax rows; or per logistic unit its probability, a single
    unit as the two columns ``[1 - p, p]`` (scikit-learn's shapes)."""
    from .functions import sigmoid, softmax
    if est.out_activation_ == "softmax":
        return softmax(scores)
    p = sigmoid(scores)
    if est.n_outputs_ == 1:
        return np.column_stack([1 - p[:, 0], p[:, 0]])
    return p


def class_rows(scores, y):
    """Per validation row: (right or not, its loss) from the network's scores and the
    encoded targets (class indices: softmax cross-entropy; 0/1 rows: the logistic units'
    binary cross-entropy summed, all units right for a hit)."""
    z = np.asarray(scores, dtype=np.float64)
    if y.ndim == 1:
        logp = log_softmax(z)[np.arange(len(y)), y]
        return z.argmax(axis=1) == y, -logp
    t = np.asarray(y, dtype=np.float64)
    return ((z > 0) == (t > 0.5)).all(axis=1), (np.logaddexp(0, z) - t * z).sum(axis=1)


# ----------------------------------------------------------------------------- regressor

def regression_targets(y, loss, dtype, name="y"):
    """Targets (N, n_outputs) of ``dtype``; for 'poisson' every value must be >= 0."""
    targets = np.ascontiguousarray(np.asarray(y).reshape(len(y), -1), dtype=dtype)
    if loss == "poisson" and (targets < 0).any():
        raise ValueError(f"Some value(s) of {name} are negative, which is not allowed for "
                         f"loss='poisson' ({name} must be >= 0).")
    return targets


def regression_outputs(est, scores):
    """Predictions from the network's scores: ``exp`` for the Poisson output."""
    return np.exp(scores) if est.out_activation_ == "exp" else scores


def regression_rows(est, scores, y):
    """Per validation row its loss as ``loss_curve_`` counts it, from the network's scores:
    half the squared error averaged over the outputs, or half the Poisson deviance summed
    over them (from the logits z: ``t * log(t) - t * z - t + exp(z)``)."""
    z, y = np.asarray(scores, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if est.out_activation_ == "exp":
        t_log_t = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0)
        return (t_log_t - y * z - y + np.exp(z)).sum(axis=1)
    return 0.5 * np.mean((z - y) ** 2, axis=1)
