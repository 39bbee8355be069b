"""``solver='lbfgs'`` of fastmlp's estimators: scikit-learn's ``_fit_lbfgs`` on the compiled
network.

scipy's L-BFGS-B (``scipy.optimize.minimize(method='L-BFGS-B', jac=True)``, options
``maxfun=max_fun``, ``maxiter=max_iter``, ``gtol=tol`` as sklearn passes them) minimises
sklearn's full-batch objective over the network's parameters, which are views of one packed
buffer (``fastmlp._fused.pack_parameters``). Each evaluation copies scipy's x into that
buffer, runs the compiled gradient over the training set (one call, or one per block of
rows for a large or sparse X: ``fastmlp._sparse_rows``) and returns the loss and the packed
gradient in float64.

The objective is sklearn's: the (sample-weighted) mean log-loss, or half the squared error
averaged over samples and outputs, plus ``0.5 * alpha * sum(W**2) / sum(sample_weight)``;
the gradient is sklearn's too (for several regression outputs it is not divided by their
number, as in sklearn). ``n_iter_`` (``min(nit, max_iter)``), ``loss_`` (scipy's final
``fun``), the ConvergenceWarning and the non-finite-weights ValueError are sklearn's;
``loss_curve_`` (which sklearn does not record for lbfgs) gets the objective at the end of
every iteration, ``t_`` is unchanged. float32 models: scipy iterates in float64, each
evaluation rounds x to float32 and computes in float32 (the gradient widened to float64),
and the fitted parameters are scipy's final x rounded to float32.
"""
import warnings

import numpy as np

from ._estimator_params import version_tuple
from ._fused import gradient_layout, pack_parameters, packed_views
from ._loop import write_line
from ._sparse_rows import block_rows, dense_rows, is_sparse, row_blocks


def check_stochastic(est):
    """``partial_fit``'s availability, as sklearn's: an AttributeError for 'lbfgs'."""
    if est.solver == "lbfgs":
        raise AttributeError("partial_fit is only available for stochastic optimizers. "
                             f"{est.solver} is not stochastic.")
    return True


class FullBatchObjective:
    """sklearn's lbfgs objective of ``net`` on the training set ``train`` and its gradient,
    as functions of the packed parameters (``net.params`` become views of ``self.packed``).

    ``output_scale``: the number of regression outputs the data term is averaged over (None
    for one output or a classifier)."""

    def __init__(self, net, train, alpha, output_scale):
        self.net, self.train, self.output_scale = net, train, output_scale
        self.packed = pack_parameters(net)
        sizes = [net.input_size, *net.hidden_size_list, net.output_size]
        shapes, offsets, _ = gradient_layout(sizes, self.packed.dtype)
        self.size = offsets[-1] + shapes[-1][0]   # up to the last bias: padding stays zero
        self.names = [f"{kind}{i}" for i in range(1, len(sizes)) for kind in ("W", "b")]
        self.grad = np.zeros(self.size, np.float64)
        self.grad_views = packed_views(self.grad, shapes, offsets)
        n = train.n
        total_weight = float(n) if train.w is None else float(train.w.sum(dtype=np.float64))
        self.decay = alpha / total_weight   # sklearn's L2 term over the whole set
        rows = block_rows(sizes, self.packed.dtype.itemsize)
        self.blocks = row_blocks(n, rows)
        self.buffer = (np.empty((min(rows, n), sizes[0]), train.X.dtype)
                       if is_sparse(train.X) else None)
        self.weights = []   # per block: each block's data term is its share of the mean
        for lo, hi in self.blocks:
            if len(self.blocks) == 1 and train.w is None:
                self.weights.append(None)
            else:
                w = np.ones(hi - lo) if train.w is None else train.w[lo:hi].astype(np.float64)
                self.weights.append((w * ((hi - lo) / total_weight)).astype(self.packed.dtype))

    def load(self, x):
        """Set the parameters to ``x`` (float64, rounded for a float32 network)."""
        np.copyto(self.packed[:self.size], x, casting="same_kind")

    def start(self):
        """The current parameters as scipy's float64 x."""
        return self.packed[:self.size].astype(np.float64)

    def __call__(self, x):
        """``(loss, gradient)`` at ``x``, both float64 (a new gradient array)."""
        self.load(x)
        net, train, loss = self.net, self.train, 0.0
        for i, ((lo, hi), w) in enumerate(zip(self.blocks, self.weights)):
            grads = net.gradient(dense_rows(train.X, slice(lo, hi), self.buffer),
                                 train.y[lo:hi], w, weight_decay=self.decay if i == 0 else 0.0)
            total = float(net.last_loss)
            if self.output_scale is not None:   # data term / n_outputs, L2 term unchanged
                data = float(net.last_layer.loss)
                total = data / self.output_scale + (total - data)
            loss += total
            for name, view in zip(self.names, self.grad_views):
                if i == 0:
                    np.copyto(view, grads[name])
                else:
                    view += grads[name]
        return loss, self.grad.copy()


class LbfgsFit:
    """One ``fit`` call with solver 'lbfgs' for estimator ``est`` (its new state committed)."""

    def __init__(self, est, train, val, params):
        self.est, self.val, self.params = est, val, params
        n_outputs = est.n_outputs_
        scale = n_outputs if est._loss_name == "mse" and n_outputs > 1 else None
        self.objective = FullBatchObjective(est._net, train, params["alpha"], scale)
        self.accepted = None     # the last iterate scipy accepted (float64)
        self.stopped = False     # a callback stopped the run

    def run(self, critical):
        """scipy's L-BFGS-B from the current parameters; Ctrl-C leaves the last iterate."""
        import scipy
        from scipy.optimize import minimize
        from sklearn.exceptions import ConvergenceWarning
        est, objective, self.critical = self.est, self.objective, critical
        x0 = objective.start()
        self.accepted = x0.copy()
        options = {"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": self.params["tol"]}
        if version_tuple(scipy.__version__) < (1, 15):   # sklearn passes iprint only there
            options["iprint"] = 1 if est.verbose else -1
        try:
            result = minimize(objective, x0, method="L-BFGS-B", jac=True, options=options,
                              callback=self.iteration_end)
        except KeyboardInterrupt:
            with critical:
                objective.load(self.accepted)
            raise
        with critical:
            objective.load(result.x)
            est.n_iter_ = min(result.nit, est.max_iter)
            est.loss_ = float(result.fun)
            finite = np.isfinite(objective.packed).all()
            if not finite:   # the last iterate, or the start, keeps the model usable
                objective.load(self.accepted if np.isfinite(self.accepted).all() else x0)
        if not finite:
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        if result.status != 0 and not self.stopped:
            message = (f"lbfgs failed to converge after {est.n_iter_} iteration(s) "
                       f"(status={result.status}):\n{result.message}\n")
            if est.n_iter_ == est.max_iter:
                message += ("\nIncrease the number of iterations to improve the convergence "
                            f"(max_iter={est.max_iter}).")
            message += ("\nYou might also want to scale the data as shown in:\n"
                        "    https://scikit-learn.org/stable/modules/preprocessing.html")
            warnings.warn(message, ConvergenceWarning, stacklevel=5)   # the caller of fit

    def iteration_end(self, intermediate_result):
        """scipy's per-iteration callback: the iterate becomes the model, its loss is recorded
        (and the validation score); fastmlp's callbacks may stop the run."""
        est, val = self.est, self.val
        loss = float(intermediate_result.fun)
        with self.critical:
            np.copyto(self.accepted, intermediate_result.x)
            self.objective.load(self.accepted)
            est.n_iter_ += 1
            est.loss_ = loss
            est.loss_curve_.append(loss)
            est.best_loss_ = min(est.best_loss_, loss)
            logs = {"loss": loss}
            if val is not None:
                logs["val_score"], logs["val_loss"] = est._evaluate(val)
                est.validation_scores_.append(logs["val_score"])
                est.validation_loss_curve_.append(logs["val_loss"])
                est.best_validation_score_ = max(est.best_validation_score_, logs["val_score"])
        if int(est.verbose) >= 2:
            write_line(None, f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        for cb in self.params["callbacks"]:
            if cb(est, len(est.loss_curve_), dict(logs)) is True:
                self.stopped = est.stop_training_ = True
        if self.stopped:
            raise StopIteration
