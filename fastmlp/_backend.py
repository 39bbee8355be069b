"""The one door to the compiled kernels.

Callers hand over validated arrays of the right dtype; this module makes
them C-contiguous and native-endian (a copy only when they are not),
allocates outputs (or uses the ``out`` given), takes the thread count from
``threads.kernel_threads`` and calls the kernel. Matrix products go to
numpy's own BLAS, connected by ``_blas`` at import; if its GEMM symbols
cannot be found they fall back to ``np.matmul(out=)``, which uses that same
BLAS and thread pool.
"""
import numpy as np

from ._blas import USE_BLAS, numpy_blas_path  # noqa: F401 (numpy_blas_path: re-exported)
from ._kernels import activations, affine, elementwise, mlp, mse, normalization, optim, reduce, softmax_ce
from .threads import kernel_threads

# USE_BLAS (from _blas) is the route the wrappers below take: True, the kernels' own GEMM
# calls into numpy's BLAS; False, np.matmul(out=). Tests switch it off here.


def contiguous(a, dtype):
    """``a`` as an aligned, C-contiguous, native-endian array of ``dtype`` (no copy if it
    already is).

    Keeps 0-d arrays 0-d (``np.ascontiguousarray`` would make them 1-d). A view of a
    buffer at an odd offset (``np.frombuffer(buf, offset=1)``) is C-contiguous but not
    aligned, and ``np.asarray`` keeps it so; the kernels load whole floats, so it is copied
    (numpy allocates aligned memory).
    """
    a = np.asarray(a, dtype=dtype, order="C")
    return a if a.flags.aligned else a.copy()


def _out(out, shape, dtype):
    return np.empty(shape, dtype) if out is None else out


# ---------------------------------------------------------------- matrix products

def matmul(a, b, out=None, trans_a=False, trans_b=False):
    """``op(a) @ op(b)`` for C-contiguous 2-D arrays of one float dtype."""
    m = a.shape[1] if trans_a else a.shape[0]
    n = b.shape[0] if trans_b else b.shape[1]
    out = _out(out, (m, n), a.dtype)
    if USE_BLAS:
        affine.matmul(a, b, out, trans_a, trans_b)
    else:
        np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)
    return out


def affine_forward(x, W, b, out=None):
    """``x @ W + b``; x (N, K), W (K, M), b (M,), all of W's dtype."""
    x, W, b = contiguous(x, W.dtype), contiguous(W, W.dtype), contiguous(b, W.dtype)
    out = _out(out, (x.shape[0], W.shape[1]), W.dtype)
    if USE_BLAS:
        affine.affine_forward(x, W, b, out)
    else:
        np.matmul(x, W, out=out)
        affine.bias_add(out, b)
    return out


def affine_backward(dout, x, W, need_dx=True, dx=None, dW=None, db=None):
    """``(dout @ W.T, x.T @ dout, dout.sum(0))``; dx is None when not needed."""
    dtype = W.dtype
    dout, x, W = contiguous(dout, dtype), contiguous(x, dtype), contiguous(W, dtype)
    dx = _out(dx, x.shape, dtype) if need_dx else None
    dW = _out(dW, W.shape, dtype)
    db = _out(db, (W.shape[1],), dtype)
    n_threads = kernel_threads(dout.size)
    if USE_BLAS:
        affine.affine_backward(dout, x, W, dx, dW, db, n_threads)
    else:
        if need_dx:
            np.matmul(dout, W.T, out=dx)
        np.matmul(x.T, dout, out=dW)
        affine.column_sums(dout, db, n_threads)
    return dx, dW, db


def column_sums(a, out=None):
    a = contiguous(a, a.dtype)
    out = _out(out, (a.shape[1],), a.dtype)
    affine.column_sums(a, out, kernel_threads(a.size))
    return out


# ---------------------------------------------------------------- activations

def relu_forward(x, out=None, mask=None):
    """``(max(x, 0), x <= 0)`` for any shape."""
    x = contiguous(x, x.dtype)
    out = _out(out, x.shape, x.dtype)
    mask = _out(mask, x.shape, np.bool_)
    activations.relu_forward(x.reshape(-1), out.reshape(-1), mask.reshape(-1).view(np.uint8),
                             kernel_threads(x.size))
    return out, mask


def relu_backward(dout, mask, out=None):
    """``dout`` with the masked entries zeroed, in a new array (dout is untouched)."""
    dout = contiguous(dout, dout.dtype)
    mask = np.ascontiguousarray(mask)
    out = _out(out, dout.shape, dout.dtype)
    activations.relu_backward(dout.reshape(-1), mask.reshape(-1).view(np.uint8), out.reshape(-1),
                              kernel_threads(dout.size))
    return out


def sigmoid_forward(x, out=None):
    x = contiguous(x, x.dtype)
    out = _out(out, x.shape, x.dtype)
    activations.sigmoid_forward(x.reshape(-1), out.reshape(-1), kernel_threads(x.size))
    return out


def sigmoid_backward(dout, y, out=None):
    """``dout * (1 - y) * y`` where y is the sigmoid's output."""
    dout, y = contiguous(dout, y.dtype), contiguous(y, y.dtype)
    out = _out(out, y.shape, y.dtype)
    activations.sigmoid_backward(dout.reshape(-1), y.reshape(-1), out.reshape(-1),
                                 kernel_threads(y.size))
    return out


def tanh_forward(x, out=None):
    x = contiguous(x, x.dtype)
    out = _out(out, x.shape, x.dtype)
    activations.tanh_forward(x.reshape(-1), out.reshape(-1), kernel_threads(x.size))
    return out


def tanh_backward(dout, y, out=None):
    """``dout * ((1 - y) * (1 + y))`` where y is tanh's output."""
    dout, y = contiguous(dout, y.dtype), contiguous(y, y.dtype)
    out = _out(out, y.shape, y.dtype)
    activations.tanh_backward(dout.reshape(-1), y.reshape(-1), out.reshape(-1),
                              kernel_threads(y.size))
    return out


def exp(x, out=None):
    """The kernels' vectorised exp (``kernels/fastmlp_exp.h``) of a float array, any shape."""
    x = contiguous(x, x.dtype)
    out = _out(out, x.shape, x.dtype)
    activations.exp_forward(x.reshape(-1), out.reshape(-1))
    return out


# ---------------------------------------------------------------- dropout, batch norm

def dropout_forward(x, key, ratio):
    """``(x * mask, mask)``: mask keeps the entries whose hashed uniform exceeds ``ratio``."""
    x = contiguous(x, x.dtype)
    out, mask = np.empty(x.shape, x.dtype), np.empty(x.shape, np.bool_)
    normalization.dropout_forward(x.reshape(-1), out.reshape(-1), mask.reshape(-1).view(np.uint8),
                                  key, ratio, kernel_threads(x.size))
    return out, mask


def dropout_backward(dout, mask):
    """``dout * mask`` in a new array."""
    dout, mask = contiguous(dout, dout.dtype), np.ascontiguousarray(mask)
    dx = np.empty(dout.shape, dout.dtype)
    normalization.dropout_backward(dout.reshape(-1), mask.reshape(-1).view(np.uint8),
                                   dx.reshape(-1))
    return dx


def scale(x, s):
    """``x * s`` in a new array, ``s`` rounded to x's dtype first (numpy's rule)."""
    x = contiguous(x, x.dtype)
    out = np.empty(x.shape, x.dtype)
    normalization.scale(x.reshape(-1), out.reshape(-1), s)
    return out


def batchnorm_train(x, gamma, beta, eps, momentum, running_mean, running_var):
    """Batch statistics of x (N, D): ``(out, xc, xn, std)``; the running arrays (C-contiguous,
    x's dtype, owned by the caller) are updated in place."""
    dt = x.dtype
    x, gamma, beta = contiguous(x, dt), contiguous(gamma, dt), contiguous(beta, dt)
    out, xc, xn = (np.empty(x.shape, dt) for _ in range(3))
    std, mean = np.empty(x.shape[1], dt), np.empty(x.shape[1], dt)
    normalization.batchnorm_train(x, gamma, beta, eps, momentum, out, xc, xn, std, mean,
                                  running_mean, running_var)
    return out, xc, xn, std


def batchnorm_infer(x, gamma, beta, running_mean, running_var, eps):
    """``gamma * (x - running_mean) / sqrt(running_var + eps) + beta`` for x (N, D)."""
    dt = x.dtype
    x, gamma, beta = contiguous(x, dt), contiguous(gamma, dt), contiguous(beta, dt)
    running_mean, running_var = contiguous(running_mean, dt), contiguous(running_var, dt)
    out = np.empty(x.shape, dt)
    normalization.batchnorm_infer(x, gamma, beta, running_mean, running_var, eps, out,
                                  np.empty(x.shape[1], dt))
    return out


def batchnorm_backward(dout, xn, gamma, std):
    """``(dx, dgamma, dbeta)`` of training-mode batch normalisation."""
    dt = xn.dtype
    dout, xn = contiguous(dout, dt), contiguous(xn, dt)
    gamma, std = contiguous(gamma, dt), contiguous(std, dt)
    dx = np.empty(xn.shape, dt)
    dgamma, dbeta = np.empty(xn.shape[1], dt), np.empty(xn.shape[1], dt)
    normalization.batchnorm_backward(dout, xn, gamma, std, dx, dgamma, dbeta,
                                     np.empty(3 * xn.shape[1], dt))
    return dx, dgamma, dbeta


# ---------------------------------------------------------------- losses

def softmax(x, out=None):
    """Row-wise softmax of a 2-D array."""
    x = contiguous(x, x.dtype)
    out = _out(out, x.shape, x.dtype)
    softmax_ce.softmax_forward(x, out, kernel_threads(x.size))
    return out


def softmax_ce_forward(x, labels, onehot, y=None):
    """``(softmax(x), loss)``; exactly one of labels (intp) / onehot (x's dtype) is given."""
    x = contiguous(x, x.dtype)
    y = _out(y, x.shape, x.dtype)
    n_threads = kernel_threads(x.size)
    if labels is not None:
        loss = softmax_ce.softmax_ce_forward_labels(x, contiguous(labels, np.intp), y, n_threads)
    else:
        loss = softmax_ce.softmax_ce_forward_onehot(x, contiguous(onehot, x.dtype), y, n_threads)
    return y, loss


def softmax_ce_backward(y, labels, onehot, dout=1.0, out=None):
    """``(y - t) * dout / N``."""
    out = _out(out, y.shape, y.dtype)
    if labels is not None:
        softmax_ce.softmax_ce_backward_labels(y, contiguous(labels, np.intp), dout, out)
    else:
        softmax_ce.softmax_ce_backward_onehot(y, contiguous(onehot, y.dtype), dout, out)
    return out


#: The fused kernels' output codes by the networks' ``loss_name`` (kernels/mlp.pyx ``Output``).
OUTPUT_CODES = {name: code for code, name in enumerate(mlp.OUTPUT_NAMES)}


def output_forward_backward(loss_name, x, labels, targets, sample_weight=None):
    """``(y, d, summed loss)`` of the output layer ``loss_name`` on the logits ``x`` (N, C):
    y the output (softmax, identity, sigmoid or exp), d = w * (y - t) / N (the same
    code the fused network kernels run)."""
    y = np.array(x, dtype=x.dtype, order="C")
    d = np.empty_like(y)
    if targets is not None:
        targets = contiguous(targets, x.dtype)
    if sample_weight is not None:
        sample_weight = contiguous(sample_weight, x.dtype)
    if labels is not None:
        labels = contiguous(labels, np.intp)
    loss = mlp.output_forward_backward(OUTPUT_CODES[loss_name], labels, targets, sample_weight,
                                       y, d)
    return y, d, loss


def mse_forward(y, t):
    """``0.5 * sum((y - t)^2) / N`` with N = y.shape[0]."""
    y, t = contiguous(y, y.dtype), contiguous(t, y.dtype)
    return mse.mse_forward(y.reshape(-1), t.reshape(-1), y.shape[0])


def mse_backward(y, t, dout=1.0, out=None):
    y, t = contiguous(y, y.dtype), contiguous(t, y.dtype)
    out = _out(out, y.shape, y.dtype)
    mse.mse_backward(y.reshape(-1), t.reshape(-1), dout, y.shape[0], out.reshape(-1))
    return out


# ---------------------------------------------------------------- Mul / Add

def mul_forward(x, y):
    x, y = contiguous(x, x.dtype), contiguous(y, x.dtype)
    out = np.empty(x.shape, x.dtype)
    elementwise.mul_forward(x.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


def mul_backward(dout, x, y):
    dout, x, y = (contiguous(a, x.dtype) for a in (dout, x, y))
    dx, dy = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
    elementwise.mul_backward(dout.reshape(-1), x.reshape(-1), y.reshape(-1),
                             dx.reshape(-1), dy.reshape(-1))
    return dx, dy


def add_forward(x, y):
    x, y = contiguous(x, x.dtype), contiguous(y, x.dtype)
    out = np.empty(x.shape, x.dtype)
    elementwise.add_forward(x.reshape(-1), y.reshape(-1), out.reshape(-1))
    return out


# ---------------------------------------------------------------- optimizer updates

#: The compiled rules' numbers by name, defined once by the C enum (kernels/fastmlp_optim.h).
OPTIMIZER_RULES = dict(optim.RULES)

def optimizer_gather(params, grads, states):
    """``(params, grads, state1, state2, largest)`` for :func:`optimizer_update` when the
    dicts' arrays (``states``: the rule's state dicts, None before the first update) can
    be used as they are, else None (see ``_kernels.optim.gather``)."""
    return optim.gather(params, grads, states)


def optimizer_update(rule, params, grads, state1, state2, lr, momentum=0.0, decay_rate=0.0,
                     beta1=0.0, beta2=0.0, eps=0.0, largest=None):
    """One optimizer step over all parameters, in place (see ``_kernels.optim.update``).

    ``params`` and the state lists hold C-contiguous, writeable arrays of one
    dtype; each grad is made C-contiguous in that dtype here, unless
    ``largest`` (the biggest parameter's size) is given by
    :func:`optimizer_gather`, which has checked every array already.
    """
    if largest is None:
        grads = [contiguous(g, p.dtype) for p, g in zip(params, grads)]
        largest = max((p.size for p in params), default=0)
        arrays = [params, state1 or [], state2 or []]
        if not all(a.flags.aligned for group in arrays for a in group):
            # The kernel loads whole floats: an unaligned (but C-contiguous) parameter or
            # state is updated in an aligned copy, then copied back.
            work = [[a if a.flags.aligned else a.copy() for a in group] for group in arrays]
            optim.update(rule, work[0], grads, work[1] if state1 is not None else None,
                         work[2] if state2 is not None else None, lr, momentum, decay_rate,
                         beta1, beta2, eps, kernel_threads(largest))
            for group, copies in zip(arrays, work):
                for a, w in zip(group, copies):
                    if w is not a:
                        np.copyto(a, w)
            return
    optim.update(rule, params, grads, state1, state2, lr, momentum, decay_rate, beta1, beta2,
                 eps, kernel_threads(largest))


def cross_entropy(y, labels):
    """The book's cross_entropy_error on probabilities ``y`` (N, C) and labels (N,)."""
    return softmax_ce.cross_entropy_labels(contiguous(y, y.dtype), contiguous(labels, np.intp))


# ---------------------------------------------------------------- whole networks
# Only with USE_BLAS: the fused network kernels call GEMM from compiled code.

def mlp_fusable(net, classes, writeable=False):
    """(Ws, bs, sizes, activation code, output code) when the network's layers, parameters
    and attributes form one network the fused kernels run (``_kernels.mlp.fusable``),
    else None."""
    return mlp.fusable(net, classes, writeable)


def mlp_fusable_extend(net, names, kinds, classes, bn_class, drop_class, writeable=False):
    """mlp_fusable for a network with batch norm and dropout layers named ``names`` (of
    ``kinds``): (Ws, bs, sizes, activation, output, bn, drop) or None
    (``_kernels.mlp.fusable_extend``)."""
    return mlp.fusable_extend(net, names, kinds, classes, bn_class, drop_class, writeable)


def mlp_params_hold(params, names, Ws, bs, bn):
    """True when ``params`` holds exactly ``Ws``, ``bs`` and each batch norm's gamma and beta
    of ``bn`` under ``names`` (``_kernels.mlp.params_hold``)."""
    return mlp.params_hold(params, names, Ws, bs, bn)


def mlp_overlaps(block, a):
    """True when ndarray ``a`` may share memory with the contiguous array ``block``."""
    return mlp.overlaps(block, a)


def copy_labels(t, out, n_classes):
    """Copy ``t`` into the intp array ``out`` when it is a 1-D signed integer array of
    ``len(out)`` labels in ``[0, n_classes)`` and return True; else False, ``out`` untouched."""
    return mlp.copy_labels(t, out, n_classes)


def mlp_predict(x, Ws, bs, hs, activation, bn=None, drop=None):
    """Forward pass of a whole network into the per-layer outputs ``hs`` (``bn``, ``drop``:
    inference-mode batch norm and dropout of the hidden layers, see ``_kernels.mlp``)."""
    mlp.mlp_predict(x, Ws, bs, hs, activation, bn, drop)


def mlp_predict_ready(net, x, classes, names):
    """``net``'s scores of ``x`` in one compiled call when both are ready for it, else None
    (``_kernels.mlp.predict_ready``)."""
    return mlp.predict_ready(net, x, classes, names)


def mlp_gradient(x, labels, targets, sample_weight, Ws, bs, hs, masks, ds, dWs, dbs,
                 activation, output, weight_decay, sgd_lr=0.0, bn=None, drop=None):
    """Forward, loss and backward of a whole network; (mean data loss, sum of W**2).

    With ``sgd_lr`` > 0 an SGD step is fused in (Ws, bs updated in place). ``bn``,
    ``drop``: training-mode batch norm and dropout of the hidden layers.
    See ``fastmlp._kernels.mlp.mlp_gradient`` for the buffers' shapes.
    """
    return mlp.mlp_gradient(x, labels, targets, sample_weight, Ws, bs, hs, masks, ds, dWs, dbs,
                            activation, output, weight_decay, sgd_lr, bn, drop)


def scaled_sum_to_all(rows, scales, lo, hi):
    """Columns ``[lo, hi)`` of ``rows`` (K x n): the ``scales``-weighted sum over the rows,
    written into every row (:mod:`fastmlp._kernels.reduce`)."""
    reduce.scaled_sum_to_all(rows, scales, lo, hi)


def mlp_loss(x, labels, targets, Ws, bs, hs, masks, ds, activation, output, sum_sq_weights):
    """Forward and loss of a whole network, no backward; (mean data loss, sum of W**2 when
    ``sum_sq_weights``, else 0). See ``fastmlp._kernels.mlp.mlp_loss``."""
    return mlp.mlp_loss(x, labels, targets, Ws, bs, hs, masks, ds, activation, output,
                        sum_sq_weights)


def mlp_accuracy(x, labels, Ws, bs, hs, activation):
    """Forward pass of a whole network, then how many rows score highest at their label."""
    return mlp.mlp_accuracy(x, labels, Ws, bs, hs, activation)
