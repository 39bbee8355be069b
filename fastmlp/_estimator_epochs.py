"""The epochs of one ``fit``/``partial_fit`` call of fastmlp's estimators, on the one
training loop (:class:`fastmlp._loop.Loop`).

:class:`FitEpochs` is the estimators' front door to the loop: scikit-learn's batches
(:class:`fastmlp._loop.EpochBatches`), the L2 term ``alpha / batch_weight`` handed to each
step, the sample-weighted epoch loss, and at each epoch's end the histories, the
no-improvement rule (patience), the learning-rate schedule, progress and callbacks.
"""
import functools
import warnings

from . import threads
from .optimizers import AdaptiveLR
from ._oversubscription import warn_if_oversubscribed
from ._loop import DivergenceError, EpochBatches, Loop, step
from ._progress import Progress


class FitEpochs:
    """One fit call's epochs for estimator ``est`` (whose new state is already committed).

    Each step's update and ``t_``, and with an epoch's last step the epoch's bookkeeping,
    change in one critical section (whole under Ctrl-C); KeyboardInterrupt propagates.
    """

    def __init__(self, est, train, val, params, incremental):
        self.est, self.val, self.params, self.incremental = est, val, params, incremental
        self.alpha = params["alpha"]
        n_outputs = est.n_outputs_
        # sklearn averages the squared error over the outputs too (other losses: summed)
        self.output_scale = n_outputs if est._net.loss_name == "mse" and n_outputs > 1 else None
        self.n_epochs = 1 if incremental else est.max_iter
        self.verbose = int(est.verbose)
        self.loop = self._make_loop(train)
        self.display = None
        self._new_epoch()

    def _make_loop(self, train):
        """The loop over scikit-learn's batches of ``train`` (a data-parallel fit: its shard's)."""
        est = self.est
        batch_size = est._batch_size(self.params, train.n)
        sampler = EpochBatches(train.X, train.y, train.w, batch_size, est._rng, est.shuffle)
        return Loop(sampler, self, functools.partial(step, est._net, est._optimizer))

    def _new_epoch(self):
        self.total = self.total_weight = 0.0
        self.batches = 0
        self.logs = self.stop = self.message = None

    def run(self, critical):
        """The epochs; with early stopping a ``fit`` ends on the best parameters (also
        after Ctrl-C, as sklearn)."""
        from sklearn.exceptions import ConvergenceWarning
        est, self.critical = self.est, critical
        warn_if_oversubscribed(threads.threads_in_use(), "fastmlp.set_num_threads(1) before "
                               "fitting, or `with fastmlp.threadpool_limits(1):` around it")
        try:
            if self.verbose:   # 1: sklearn's lines; 2: also a bar (terminal or notebook)
                self.display = Progress(self.n_epochs, "epoch", desc=type(est).__name__,
                                        bar=None if self.verbose >= 2 and not self.incremental
                                        else False)
            # n_iter_ and stop_training_ start at 0 and False in every fit call
            try:
                self.loop.run(critical, lambda: est.n_iter_ == self.n_epochs or est.stop_training_,
                              after_epoch=self.after_epoch)
            except DivergenceError as exc:
                if not est.early_stopping:
                    raise
                self.stop_diverged(exc)
            if not est.stop_training_ and not self.incremental and est.n_iter_ == est.max_iter:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({est.max_iter}) "
                              "reached and the optimization hasn't converged yet.",
                              ConvergenceWarning)
        finally:
            if self.display is not None:
                self.display.close()
            if est.early_stopping and not self.incremental and est._best_params is not None:
                with critical:
                    est._restore_best()

    # -- the Loop's front-door hooks ---------------------------------------------

    def batch_weight_decay(self, batch):
        return self.alpha / batch.weight   # sklearn's L2 term: alpha * sum(W**2) / (2 * batch)

    def record_step(self, batch, loss):
        if self.output_scale is not None:   # data term / n_outputs, L2 term unchanged
            data_loss = self.data_loss()
            loss = data_loss / self.output_scale + (loss - data_loss)
        self.est.t_ += self.samples(batch)
        self.total += loss * batch.weight
        self.total_weight += batch.weight
        self.batches += 1

    def data_loss(self):
        """The last step's loss without the L2 term."""
        return float(self.est._net.last_layer.loss)

    def samples(self, batch):
        """The samples a step trained on (``t_`` counts them)."""
        return batch.x.shape[0]

    def epoch_end_due(self, batch):
        return batch.ends_epoch

    def end_epoch(self, critical):
        self.logs, self.stop, self.message = self.record_epoch(self.total / self.total_weight)

    def diverged(self, loss):
        est = self.est
        epoch, batch = len(est.loss_curve_) + 1, self.batches + 1
        raise DivergenceError(
            f"training diverged: the loss became {loss} in epoch {epoch}, batch {batch}; that "
            f"update was not applied (the parameters are those of the previous step). Try a "
            f"smaller learning_rate_init than {est._optimizer.lr:g}, or scale the features.",
            step=batch, epoch=epoch, loss=loss)

    def stop_diverged(self, exc):
        """With ``early_stopping`` a divergence ends training instead of raising, as in
        scikit-learn (its issue #29504): the cut epoch is recorded with its non-finite loss
        and a NaN validation score, and the call ends on the best parameters (if no epoch
        was scored yet, on those of the last finite step)."""
        from sklearn.exceptions import ConvergenceWarning
        est = self.est
        with self.critical:
            est.n_iter_ += 1
            est.loss_ = exc.loss
            est.loss_curve_.append(exc.loss)
            est.validation_scores_.append(float("nan"))
            est.validation_loss_curve_.append(float("nan"))
            est.stop_training_ = True
            if self.incremental and est._best_params is not None:
                est._restore_best()
                est._no_improvement_count = 0
        message = (f"Training diverged: the loss became {exc.loss} in epoch {exc.epoch}, batch "
                   f"{exc.step}; with early_stopping the epoch scores NaN and training stopped "
                   f"on the parameters of the best validation score. Try a smaller "
                   f"learning_rate_init than {est._optimizer.lr:g}, or scale the features.")
        if self.display is not None:   # the cut epoch's lines as sklearn's read (the why: below)
            self.display.write(f"Iteration {len(est.loss_curve_)}, loss = {exc.loss:.8f}")
            self.display.write(f"Validation score: {float('nan'):f}")
        warnings.warn(message, ConvergenceWarning)

    # -- epochs ---------------------------------------------------------------------

    def record_epoch(self, epoch_loss):
        """An epoch's bookkeeping (inside the critical section of its last step): the loss
        and validation histories, the stopping rule, the learning-rate schedule.

        Returns (logs, stop, message)."""
        est, val = self.est, self.val
        logs = {"loss": epoch_loss}
        if val is not None:
            score, val_loss = self.evaluate(val)
            logs["val_score"], logs["val_loss"] = score, val_loss
        est.n_iter_ += 1
        est.loss_ = epoch_loss
        est.loss_curve_.append(epoch_loss)
        if val is not None:
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(val_loss)
        stop, message = self.no_improvement()
        self.params["schedule"].epoch_end(est._optimizer, est.t_)
        logs["lr"] = est._optimizer.lr
        return logs, stop, message

    def evaluate(self, val):
        """(score, loss) on the validation set."""
        return self.est._evaluate(val)

    def no_improvement(self):
        """sklearn's rule: patience over the validation score (early stopping) or the training
        loss; on a plateau the schedule may lower the learning rate instead of stopping.

        Returns (stop, message)."""
        est, tol = self.est, self.params["tol"]
        loss = est.loss_curve_[-1]
        if est.early_stopping:
            score = est.validation_scores_[-1]
            if not score >= est.best_validation_score_ + tol:  # NaN counts as no improvement
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._save_best()
            what = "Validation score"
        else:
            if self.val is not None:
                est.best_validation_score_ = max(est.best_validation_score_,
                                                 est.validation_scores_[-1])
            if loss > est.best_loss_ - tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            what = "Training loss"
        est.best_loss_ = min(est.best_loss_, loss)
        if est._no_improvement_count <= est.n_iter_no_change:
            return False, None
        message = (f"{what} did not improve more than tol={tol:f} for "
                   f"{est.n_iter_no_change} consecutive epochs.")
        opt, schedule = est._optimizer, self.params["schedule"]
        if schedule.plateau(opt):   # sklearn's verbose lines, word for word
            est._no_improvement_count = 0
            return False, f"{message} Setting learning rate to {opt.lr:f}"
        if isinstance(schedule, AdaptiveLR):
            return True, message + " Learning rate too small. Stopping."
        return True, message + " Stopping."

    def after_epoch(self):
        """Progress, verbose lines and callbacks after an epoch (outside the critical section);
        True stops training.

        The verbose lines are scikit-learn's: ``Iteration N, loss = X``, ``Validation
        score: X`` when a validation set is scored, and the stopping rule's message."""
        est, logs, display = self.est, self.logs, self.display
        epoch = len(est.loss_curve_)   # sklearn's n_iter_: counts on over warm starts
        if display is not None:
            display.update(**{k: f"{v:.4g}" for k, v in logs.items()})
            display.write(f"Iteration {epoch}, loss = {est.loss_:.8f}")
            if "val_score" in logs:
                display.write(f"Validation score: {logs['val_score']:f}")
            if self.message is not None:   # the rule stopped, or lowered the learning rate
                display.write(self.message)
        stop, message = self.stop, None
        for cb in self.params["callbacks"]:
            if cb(est, epoch, dict(logs)) is True and not stop:
                stop = True
                message = f"A callback stopped training after epoch {epoch}."
        stop, message = self.agree_stop(stop, message, epoch)
        self._new_epoch()
        if not stop:
            return False
        with self.critical:
            est.stop_training_ = True
            if self.incremental and est.early_stopping and est._best_params is not None:
                est._restore_best()
                est._no_improvement_count = 0
        if display is not None and message is not None:
            display.write(message)
        return True

    def agree_stop(self, stop, message, epoch):
        """The stopping decision after the callbacks (a data-parallel fit agrees it)."""
        return stop, message
