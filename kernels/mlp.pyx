"""A whole MLP in one compiled call: forward, softmax-CE, backward, over layer lists.

The network (fastmlp/networks.py) hands over its weights and a workspace of
preallocated buffers as lists of C-contiguous arrays of one float dtype; the
Python side has checked every shape. Per layer: one GEMM, then one fused
pass (bias + activation + mask) forward; backward one or two GEMMs and one
fused pass (activation derivative), the first layer's dx skipped. The
output (softmax, identity, sigmoid or exp), loss and w * (y - t)/N come out
of one pass per row. Every reduction
(db, loss) runs in a fixed order, so the bits never depend on threads.
"""
from cython cimport floating
from libc.math cimport NAN, exp, fabs, isfinite, log, log1p
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memset
cimport numpy as cnp
import numpy as np

from _arrays cimport ready
from _blas cimport (gemm, gemm_rows, fastmlp_dgemm_batch_ptr, fastmlp_row_blocks,
                   fastmlp_set_blas, fastmlp_set_blas_rows, fastmlp_sgemm_batch_ptr)
from _simd cimport (bias, bias_relu, bias_sigmoid, bias_tanh, column_sums, exp_shifted,
                    relu_backward, sigmoid_backward, tanh_backward)
cimport _norm

cnp.import_array()


def set_blas(size_t sgemm, size_t dgemm, size_t sgemv, size_t dgemv, bint ilp64):
    """Point this module's GEMM at the Fortran sgemm/dgemm (and gemv, or 0) at these addresses."""
    fastmlp_set_blas(sgemm, dgemm, sgemv, dgemv, ilp64)


def set_blas_rows(size_t sgemm_batch, size_t dgemm_batch, size_t threads):
    """Point inference's row-block products at OpenBLAS's cblas_?gemm_batch and its
    thread count (0: none; see fastmlp_blas.h)."""
    fastmlp_set_blas_rows(sgemm_batch, dgemm_batch, threads)


def row_blocks_available():
    """True when inference's row-block products are wired to OpenBLAS (``_blas.py``)."""
    return fastmlp_sgemm_batch_ptr != NULL and fastmlp_dgemm_batch_ptr != NULL


def row_blocks(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k, bint double):
    """How many blocks (of rows; of columns when n >= 8 m) inference splits C (m x n) =
    A (m x k) @ B (k x n) into now (0: one GEMM), for float64 when ``double`` else float32."""
    if double:
        return fastmlp_row_blocks(fastmlp_dgemm_batch_ptr, m, n, k)
    return fastmlp_row_blocks(fastmlp_sgemm_batch_ptr, m, n, k)

cdef enum Activation:
    RELU = 0
    SIGMOID = 1
    TANH = 2
    IDENTITY = 3      # no activation: h = h + b

# the networks' ``activation`` names, indexed by code
ACTIVATION_NAMES = ("relu", "sigmoid", "tanh", "identity")

cdef enum Output:
    SOFTMAX_CE = 0    # softmax + cross-entropy on labels or one-hot rows
    MSE = 1           # identity + 0.5 * squared error on float targets
    LOGISTIC = 2      # sigmoid + binary cross-entropy per unit, on 0/1 (or [0, 1]) targets
    POISSON = 3       # exp + half Poisson deviance per unit, on targets >= 0

# the networks' ``loss_name`` of each output, indexed by code
OUTPUT_NAMES = ("cross_entropy", "mse", "logistic", "poisson")


cdef inline void* _data(object a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline Py_ssize_t _cols(object a):
    return cnp.PyArray_DIMS(<cnp.ndarray>a)[1]


cdef void _bias_activation(floating *h, const floating *b, unsigned char *mask,
                           Py_ssize_t n, Py_ssize_t m, int act) noexcept nogil:
    """h = act(h + b) row by row; mask = (h + b <= 0) for ReLU when mask is given.
    Each is one vectorised pass (fastmlp_simd.h, fastmlp_exp.h: exp without libm)."""
    if act == RELU:
        bias_relu(h, b, mask, n, m)
    elif act == SIGMOID:
        bias_sigmoid(h, b, n, m)
    elif act == TANH:
        bias_tanh(h, b, n, m)
    else:
        bias(h, b, n, m)


cdef void _activation_backward(floating *d, const floating *h, const unsigned char *mask,
                               Py_ssize_t size, int act) noexcept nogil:
    """d *= act'(.) in place: zero where masked (ReLU), times (1 - h) * h (sigmoid),
    times (1 - h) * (1 + h) (tanh), unchanged (identity)."""
    if act == RELU:
        relu_backward(d, mask, d, 0, size)
    elif act == SIGMOID:
        sigmoid_backward(d, h, d, 0, size)
    elif act == TANH:
        tanh_backward(d, h, d, 0, size)


cdef double _softmax_ce(floating *y, floating *d, const Py_ssize_t *labels,
                        const floating *onehot, const floating *weights,
                        Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    """y = softmax(logits) in place, d = w * (y - t) / n; return the summed cross-entropy.

    The loss is the exact -sum(w * t * log_softmax(logits)), finite for any
    logits; its gradient is exactly w * (y - t) / n (w = 1 without weights).
    """
    cdef Py_ssize_t i, j
    cdef floating mx, t, scale
    cdef double w
    cdef double s, t_logit, t_sum, loss = 0
    cdef floating *row
    for i in range(n):
        w = 1 if weights == NULL else weights[i]
        scale = w / n
        row = y + i * c
        mx = row[0]
        for j in range(1, c):
            if row[j] > mx:
                mx = row[j]
        s = 0
        t_logit = 0   # sum_j t_j * (logit_j - max)
        t_sum = 0     # sum_j t_j
        for j in range(c):
            t = onehot[i * c + j] if onehot != NULL else (1 if j == labels[i] else 0)
            if t != 0:
                t_logit += t * <double>(row[j] - mx)
                t_sum += t
        exp_shifted(row, mx, row, c)   # vectorised exp (fastmlp_exp.h)
        for j in range(c):
            s += row[j]
        loss += w * (t_sum * log(s) - t_logit)
        for j in range(c):
            row[j] = row[j] / s
            t = onehot[i * c + j] if onehot != NULL else (1 if j == labels[i] else 0)
            d[i * c + j] = (row[j] - t) * scale
    return loss


cdef double _mse(const floating *y, floating *d, const floating *t, const floating *weights,
                 Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    """d = w * (y - t) / n for identity outputs; return the summed 0.5 * w * (y - t)^2."""
    cdef Py_ssize_t i, j
    cdef floating scale, diff
    cdef double w, loss = 0
    for i in range(n):
        w = 1 if weights == NULL else weights[i]
        scale = w / n
        for j in range(c):
            diff = y[i * c + j] - t[i * c + j]
            d[i * c + j] = diff * scale
            loss += 0.5 * w * diff * diff
    return loss


cdef double _logistic(floating *y, floating *d, const floating *t, const floating *weights,
                      Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    """y = sigmoid(logits) in place, d = w * (y - t) / n; return the summed binary
    cross-entropy sum(w * (max(z, 0) - t * z + log1p(exp(-|z|)))), computed from the
    logits z: exact and finite for any z (no log(0), no overflow)."""
    cdef Py_ssize_t i, j
    cdef double w, z, e, p, loss = 0
    for i in range(n):
        w = 1 if weights == NULL else weights[i]
        for j in range(c):
            z = y[i * c + j]
            e = exp(-fabs(z))          # in (0, 1]
            loss += w * ((z if z > 0 else 0) - t[i * c + j] * z + log1p(e))
            p = 1 / (1 + e) if z >= 0 else e / (1 + e)
            y[i * c + j] = p
            d[i * c + j] = (p - t[i * c + j]) * w / n
    return loss


cdef double _poisson(floating *y, floating *d, const floating *t, const floating *weights,
                     Py_ssize_t n, Py_ssize_t c) noexcept nogil:
    """y = exp(logits) in place, d = w * (y - t) / n; return the summed half Poisson
    deviance sum(w * (t * log(t) - t * z - t + exp(z))) (t * log(t) = 0 at t = 0), as
    scikit-learn's MLPRegressor(loss='poisson') defines it, from the logits z (finite
    for any z until exp(z) overflows)."""
    cdef Py_ssize_t i, j
    cdef double w, z, mu, tt, loss = 0
    for i in range(n):
        w = 1 if weights == NULL else weights[i]
        for j in range(c):
            z = y[i * c + j]
            tt = t[i * c + j]
            mu = exp(z)
            loss += w * ((tt * (log(tt) - z) - tt if tt > 0 else 0) + mu)
            y[i * c + j] = mu
            d[i * c + j] = (mu - tt) * w / n
    return loss


cdef double _output_loss(int output, floating *y, floating *d, const Py_ssize_t *labels,
                         const floating *targets, const floating *weights, Py_ssize_t n,
                         Py_ssize_t c) noexcept nogil:
    """The output layer of code ``output`` on the logits y (n, c), in place: y becomes the
    output, d = w * (y - t) / n its gradient w.r.t. the logits; returns the summed loss."""
    if output == SOFTMAX_CE:
        return _softmax_ce(y, d, labels, targets, weights, n, c)
    if output == LOGISTIC:
        return _logistic(y, d, targets, weights, n, c)
    if output == POISSON:
        return _poisson(y, d, targets, weights, n, c)
    return _mse(y, d, targets, weights, n, c)


def output_forward_backward(int output, object labels, object targets, object sample_weight,
                            object y, object d):
    """The output layer of code ``output`` alone: y (N, C) holds the logits on entry and
    the output on return, d = w * (y - t) / N; returns the summed loss (divide by N for the
    mean). labels (N,) intp (softmax only) or targets (N, C) of y's dtype; sample_weight
    (N,) or None. Every array is checked first (ValueError)."""
    if output < SOFTMAX_CE or output > POISSON:
        raise ValueError(f"unknown output code {output}")
    if not isinstance(y, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>y) != 2:
        raise ValueError("y must be a 2-D array")
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>y)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise ValueError("y must be float32 or float64")
    cdef Py_ssize_t n = cnp.PyArray_DIMS(<cnp.ndarray>y)[0], c = _cols(y)
    _check(y, "y", -1, typenum, n, c, True)
    _check(d, "d", -1, typenum, n, c, True)
    _check_targets(labels, targets, sample_weight, output, typenum, n, c)
    cdef const Py_ssize_t *lp = <const Py_ssize_t*>(NULL if labels is None else _data(labels))
    cdef void *tp = NULL if targets is None else _data(targets)
    cdef void *wp = NULL if sample_weight is None else _data(sample_weight)
    cdef void *yp = _data(y)
    cdef void *dp = _data(d)
    cdef double loss
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            loss = _output_loss(output, <float*>yp, <float*>dp, lp, <const float*>tp,
                                <const float*>wp, n, c)
        else:
            loss = _output_loss(output, <double*>yp, <double*>dp, lp, <const double*>tp,
                                <const double*>wp, n, c)
    return loss


cdef struct Layer:
    # the pointers of one Affine (+ activation) layer, taken while holding the GIL
    void *W           # (k, m) weights
    void *b           # (m,) bias
    void *h           # (N, m) output
    unsigned char *mask   # (N, m) ReLU mask, or NULL
    void *d           # (N, m) gradient of the loss w.r.t. the output
    void *dW          # (k, m)
    void *db          # (m,)
    Py_ssize_t k, m
    # batch normalisation after the Affine (see _attach_extras); bn = 0 when none
    int bn            # 0 none, 1 batch statistics (training), 2 running statistics
    void *gamma
    void *beta
    void *xc          # (N, m)
    void *xn          # (N, m)
    void *std         # (m,)
    void *mean        # (m,) scratch
    void *rmean       # (m,) running mean, updated in place when training
    void *rvar        # (m,)
    void *dgamma      # (m,)
    void *dbeta       # (m,)
    void *work        # (3m,) scratch
    double momentum, eps
    # dropout after the activation: 0 none, 1 mask drawn (training), 2 scaled by keep
    int drop
    unsigned char *dmask   # (N, m)
    uint64_t key
    uint32_t threshold
    double keep


cdef int _check(object a, str name, Py_ssize_t index, int typenum, Py_ssize_t rows,
                Py_ssize_t cols, bint writeable) except -1:
    """Raise ValueError unless a is a ready (aligned, native, C-contiguous) array of typenum
    and shape (rows, cols), or (rows,) when cols < 0. The error names ``name``, with
    ``[index]`` when index >= 0 (formatted only on error: this runs every step)."""
    cdef cnp.ndarray arr
    cdef int ndim = 1 if cols < 0 else 2
    if ready(a, typenum, writeable):
        arr = <cnp.ndarray>a
        if (cnp.PyArray_NDIM(arr) == ndim and cnp.PyArray_DIMS(arr)[0] == rows
                and (ndim == 1 or cnp.PyArray_DIMS(arr)[1] == cols)):
            return 0
        what = name if index < 0 else f"{name}[{index}]"
        expected = <object>(rows,) if cols < 0 else <object>(rows, cols)
        raise ValueError(f"{what} has shape {a.shape}, expected {expected}")
    what = name if index < 0 else f"{name}[{index}]"
    raise ValueError(f"{what} must be an aligned, C-contiguous, native-order"
                     f"{' writeable' if writeable else ''} array of the network's dtype")


cdef Layer* _layers(object x, list Ws, list bs, list hs, list masks, list ds, list dWs,
                    list dbs, bint update=False) except NULL:
    """Check every array the kernel will touch against x and the weights' shapes, then
    collect the layers' pointers and sizes (freed by the caller).

    Nothing is trusted: the shapes come from the arrays themselves (x (N, K0),
    W[i] (K_i, M_i) with K_i = M_(i-1)) and every buffer is checked against them,
    so no list or attribute changed by a caller can make the kernel read or
    write out of bounds. update: Ws and bs must be writeable (a fused SGD step)."""
    cdef Py_ssize_t i, L = len(Ws), n, k
    cdef int typenum
    if not isinstance(x, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>x) != 2:
        raise ValueError("x must be a 2-D array")
    typenum = cnp.PyArray_TYPE(<cnp.ndarray>x)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
        raise ValueError("x must be float32 or float64")
    n, k = cnp.PyArray_DIMS(<cnp.ndarray>x)[0], cnp.PyArray_DIMS(<cnp.ndarray>x)[1]
    _check(x, "x", -1, typenum, n, k, False)
    if L == 0 or len(bs) != L or len(hs) != L:
        raise ValueError("Ws, bs and hs must hold one entry per layer")
    for lst, what in ((masks, "masks"), (ds, "ds"), (dWs, "dWs"), (dbs, "dbs")):
        if lst is not None and len(lst) != L:
            raise ValueError(f"{what} must hold one entry per layer")
    for i in range(L):
        W = Ws[i]
        if not isinstance(W, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>W) != 2:
            raise ValueError(f"W{i + 1} must be a 2-D array")
        _check(W, "Ws", i, typenum, k, cnp.PyArray_DIMS(<cnp.ndarray>W)[1], update)
        k = _cols(W)   # this layer's width: the next layer's input
        _check(bs[i], "bs", i, typenum, k, -1, update)
        _check(hs[i], "hs", i, typenum, n, k, True)
        if ds is not None:
            _check(ds[i], "ds", i, typenum, n, k, True)
        if dWs is not None:
            _check(dWs[i], "dWs", i, typenum, cnp.PyArray_DIMS(<cnp.ndarray>W)[0], k, True)
        if dbs is not None:
            _check(dbs[i], "dbs", i, typenum, k, -1, True)
        if masks is not None and i < L - 1 and masks[i] is not None:
            _check(masks[i], "masks", i, cnp.NPY_UINT8, n, k, True)
    cdef Layer *layers = <Layer*>malloc(L * sizeof(Layer))
    if layers == NULL:
        raise MemoryError()
    memset(layers, 0, L * sizeof(Layer))   # no batch norm, no dropout unless attached
    for i in range(L):
        layers[i].W = _data(Ws[i])
        layers[i].b = _data(bs[i])
        layers[i].h = _data(hs[i])
        layers[i].mask = NULL if masks is None or i == L - 1 or masks[i] is None \
            else <unsigned char*>_data(masks[i])
        layers[i].d = NULL if ds is None else _data(ds[i])
        layers[i].dW = NULL if dWs is None else _data(dWs[i])
        layers[i].db = NULL if dbs is None else _data(dbs[i])
        layers[i].k = cnp.PyArray_DIMS(<cnp.ndarray>Ws[i])[0]
        layers[i].m = _cols(Ws[i])
    return layers


cdef void _bn_forward(Layer *layer, floating *h, Py_ssize_t n) noexcept nogil:
    """h = gamma * xhat in place (beta is added with the activation), with the batch's
    statistics (updating the running ones) or the running statistics."""
    if layer.bn == 1:
        _norm.bn_train(<const floating*>h, <const floating*>layer.gamma, NULL, layer.eps,
                       layer.momentum, n, layer.m, h, <floating*>layer.xc, <floating*>layer.xn,
                       <floating*>layer.std, <floating*>layer.mean, <floating*>layer.rmean,
                       <floating*>layer.rvar)
    else:
        _norm.bn_infer(<const floating*>h, <const floating*>layer.gamma, NULL,
                       <const floating*>layer.rmean, <const floating*>layer.rvar, layer.eps,
                       n, layer.m, h, <floating*>layer.work)


cdef void _dropout_forward(Layer *layer, floating *h, Py_ssize_t n) noexcept nogil:
    """h *= mask (drawn from the layer's key) when training, h *= keep otherwise."""
    if layer.drop == 1:
        _norm.dropout_forward(<const floating*>h, h, layer.dmask, layer.key, layer.threshold,
                              0, n * layer.m)
    else:
        _norm.scale(<const floating*>h, h, <floating>layer.keep, 0, n * layer.m)


cdef void _bn_backward(Layer *layer, floating *d, Py_ssize_t n, floating sgd_lr) noexcept nogil:
    """d = the gradient before batch normalisation (in place), dgamma and dbeta; with a
    fused SGD step also gamma -= lr * dgamma, beta -= lr * dbeta (after their last use)."""
    _norm.bn_backward(<const floating*>d, <const floating*>layer.xn,
                      <const floating*>layer.gamma, <const floating*>layer.std, n, layer.m, d,
                      <floating*>layer.dgamma, <floating*>layer.dbeta, <floating*>layer.work)
    _bn_sgd(layer, sgd_lr)


cdef void _bn_relu_backward(Layer *layer, Py_ssize_t n, floating sgd_lr) noexcept nogil:
    """The backward of _forward's fused pass (bn_relu_train) in place on layer.d, with
    dgamma, dbeta and db; with a fused SGD step also the gamma and beta updates."""
    _norm.bn_relu_backward(<floating*>layer.d, layer.dmask if layer.drop == 1 else NULL,
                           layer.mask, <const floating*>layer.xn, <const floating*>layer.gamma,
                           <const floating*>layer.std, n, layer.m, <floating*>layer.dgamma,
                           <floating*>layer.dbeta, <floating*>layer.db, <floating*>layer.work)
    _bn_sgd(layer, sgd_lr)


cdef void _bn_sgd(Layer *layer, floating sgd_lr) noexcept nogil:
    """gamma -= lr * dgamma, beta -= lr * dbeta when sgd_lr is not 0 (a fused SGD step)."""
    cdef Py_ssize_t j
    cdef floating *gamma = <floating*>layer.gamma
    cdef floating *beta = <floating*>layer.beta
    cdef floating *dgamma = <floating*>layer.dgamma
    cdef floating *dbeta = <floating*>layer.dbeta
    if sgd_lr != 0:
        for j in range(layer.m):
            gamma[j] -= sgd_lr * dgamma[j]
            beta[j] -= sgd_lr * dbeta[j]


cdef bint _x_finite(const floating *x, const floating *h, Py_ssize_t n, Py_ssize_t k,
                    Py_ssize_t m) noexcept nogil:
    """False when x (n, k) holds a NaN or an infinity, read in O(n) from h = x @ W: a
    non-finite x[i, l] makes x[i, l] * W[l, 0] non-finite whatever W[l, 0] is (inf * 0 is
    NaN), so every h[i, 0] of such a row is too. Only when some h[i, 0] is non-finite
    (the weights could be) is x itself scanned."""
    cdef Py_ssize_t i
    for i in range(n):
        if not isfinite(h[i * m]):
            break
    else:
        return True
    for i in range(n * k):
        if not isfinite(x[i]):
            return False
    return True


cdef inline bint _bn_relu_fused(const Layer *layer, int act) noexcept nogil:
    """True when a training layer's bias, batch norm, ReLU and dropout (if any) run as the
    fused passes of fastmlp_norm.h (bn_relu_train forward, bn_relu_backward backward)."""
    return layer.bn == 1 and act == RELU and layer.mask != NULL


cdef int _forward(const floating *x, Layer *layers, Py_ssize_t L, Py_ssize_t n,
                  int act, bint check_x=False, bint row_blocks=False) noexcept nogil:
    """h[i] = act(h[i-1] @ W[i] + b[i]); the last layer's logits stay unactivated.
    With check_x, returns 1 right after the first product, before any batch statistic
    or mask is touched, when x holds a NaN or an infinity (else 0). row_blocks
    (inference): products as row blocks on BLAS's pool where that applies."""
    cdef Py_ssize_t i
    cdef const floating *a = x
    for i in range(L):
        if row_blocks:
            gemm_rows(n, layers[i].m, layers[i].k, a, layers[i].k,
                      <const floating*>layers[i].W, layers[i].m, <floating*>layers[i].h,
                      layers[i].m)
        else:
            gemm(False, False, n, layers[i].m, layers[i].k, 1, a, layers[i].k,
                 <const floating*>layers[i].W, layers[i].m, 0, <floating*>layers[i].h,
                 layers[i].m)
        if i == 0 and check_x and not _x_finite(x, <const floating*>layers[0].h, n,
                                                layers[0].k, layers[0].m):
            return 1
        if i < L - 1:
            if _bn_relu_fused(&layers[i], act):   # 3 passes, not 5 (6 with dropout)
                _norm.bn_relu_train(<floating*>layers[i].h, <const floating*>layers[i].b,
                                    <const floating*>layers[i].gamma,
                                    <const floating*>layers[i].beta, layers[i].eps,
                                    layers[i].momentum, n, layers[i].m, <floating*>layers[i].xc,
                                    <floating*>layers[i].xn, <floating*>layers[i].std,
                                    <floating*>layers[i].mean, <floating*>layers[i].rmean,
                                    <floating*>layers[i].rvar, layers[i].mask,
                                    layers[i].dmask if layers[i].drop == 1 else NULL,
                                    layers[i].key, layers[i].threshold)
            else:
                if layers[i].bn:   # Affine (+ b), normalise (gamma * xhat), then act(. + beta)
                    bias(<floating*>layers[i].h, <const floating*>layers[i].b, n, layers[i].m)
                    _bn_forward(&layers[i], <floating*>layers[i].h, n)
                    _bias_activation(<floating*>layers[i].h, <const floating*>layers[i].beta,
                                     layers[i].mask, n, layers[i].m, act)
                else:
                    _bias_activation(<floating*>layers[i].h, <const floating*>layers[i].b,
                                     layers[i].mask, n, layers[i].m, act)
                if layers[i].drop:
                    _dropout_forward(&layers[i], <floating*>layers[i].h, n)
        else:
            bias(<floating*>layers[i].h, <const floating*>layers[i].b, n, layers[i].m)
        a = <const floating*>layers[i].h
    return 0


cdef double _backward(const floating *x, const Py_ssize_t *labels, const floating *onehot,
                      const floating *weights, int output, Layer *layers, Py_ssize_t L,
                      Py_ssize_t n, int act, floating weight_decay, floating sgd_lr,
                      double *sum_sq_weights) noexcept nogil:
    """The loss on the last layer's output, then every layer's dW, db and hidden gradients.

    With weight decay, also sum_sq_weights = sum of W**2 over all layers (for
    the loss). With sgd_lr > 0 the SGD step is fused in: W -= sgd_lr * dW goes
    straight into the GEMM (alpha = -sgd_lr, beta = 1) and b -= sgd_lr * db,
    so dW is never stored; a non-finite loss stops before any update.
    """
    cdef Py_ssize_t i, j, k, m
    cdef double loss
    cdef floating *d
    cdef floating *dW
    cdef floating *W
    cdef floating *b
    cdef floating *db
    cdef const floating *a
    cdef floating decay = 1 - sgd_lr * weight_decay
    loss = _output_loss(output, <floating*>layers[L - 1].h, <floating*>layers[L - 1].d, labels,
                        onehot, weights, n, layers[L - 1].m)
    if sgd_lr != 0 and not isfinite(loss):
        return loss
    for i in range(L - 1, -1, -1):
        k, m = layers[i].k, layers[i].m
        d, W, dW = <floating*>layers[i].d, <floating*>layers[i].W, <floating*>layers[i].dW
        b, db = <floating*>layers[i].b, <floating*>layers[i].db
        a = x if i == 0 else <const floating*>layers[i - 1].h
        if i > 0:   # d[i-1] = (d @ W.T) * act'(h[i-1]), with W as it was in forward
            gemm(False, True, n, k, m, 1, d, m, W, m, 0, <floating*>layers[i - 1].d, k)
            if _bn_relu_fused(&layers[i - 1], act):   # two passes, not six; db[i-1] too
                _bn_relu_backward(&layers[i - 1], n, sgd_lr)
            else:
                if layers[i - 1].drop:   # h = act * mask: d is zero wherever act' sees 0
                    _norm.dropout_backward(<floating*>layers[i - 1].d, layers[i - 1].dmask,
                                           <floating*>layers[i - 1].d, 0, n * k)
                _activation_backward(<floating*>layers[i - 1].d, a, layers[i - 1].mask, n * k,
                                     act)
                if layers[i - 1].bn:
                    _bn_backward(&layers[i - 1], <floating*>layers[i - 1].d, n, sgd_lr)
        if weight_decay != 0:
            for j in range(k * m):
                sum_sq_weights[0] += <double>W[j] * W[j]
        if not _bn_relu_fused(&layers[i], act):   # else _bn_relu_backward summed db
            column_sums(d, m, db, n, m)
        if sgd_lr == 0:
            if weight_decay != 0:   # dW = wd * W, then the GEMM adds a.T @ d on top (beta = 1)
                for j in range(k * m):
                    dW[j] = weight_decay * W[j]
            gemm(True, False, k, m, n, 1, a, k, d, m, 1 if weight_decay != 0 else 0, dW, m)
        else:                       # W = W * (1 - lr * wd) - lr * a.T @ d; b -= lr * db
            if weight_decay != 0:
                for j in range(k * m):
                    W[j] = W[j] * decay
            gemm(True, False, k, m, n, -sgd_lr, a, k, d, m, 1, W, m)
            for j in range(m):
                b[j] -= sgd_lr * db[j]
    return loss


cdef int _attach_extras(Layer *layers, Py_ssize_t L, Py_ssize_t n, int typenum, list bn,
                        list drop, bint train, bint update) except -1:
    """Check and attach batch normalisation and dropout to the hidden layers.

    bn, drop: None, or one entry per hidden layer (None: not there). Training, a bn entry
    is (gamma, beta, xc, xn, std, mean, running_mean, running_var, dgamma, dbeta, work,
    momentum, eps) and a drop entry (mask (N, m) uint8, key, ratio); in inference
    (train False) (gamma, beta, running_mean, running_var, work, eps) and (ratio,).
    update: gamma and beta must be writeable (a fused SGD step)."""
    cdef Py_ssize_t i, m
    for lst, what in ((bn, "bn"), (drop, "drop")):
        if lst is not None and len(lst) != L - 1:
            raise ValueError(f"{what} must hold one entry per hidden layer")
    for i in range(L - 1):
        m = layers[i].m
        entry = None if bn is None else bn[i]
        if entry is not None:
            if train:
                (gamma, beta, xc, xn, std, mean, rmean, rvar, dgamma, dbeta, work, momentum,
                 eps) = entry
            else:
                gamma, beta, rmean, rvar, work, eps = entry
                momentum = 0.0
            _check(gamma, "gamma", i, typenum, m, -1, update)
            _check(beta, "beta", i, typenum, m, -1, update)
            _check(rmean, "running_mean", i, typenum, m, -1, train)
            _check(rvar, "running_var", i, typenum, m, -1, train)
            _check(work, "work", i, typenum, 3 * m, -1, True)
            if not (0 <= momentum <= 1 and eps > 0):
                raise ValueError(f"momentum must lie in [0, 1] and eps be > 0, got "
                                 f"{momentum}, {eps}")
            layers[i].bn = 1 if train else 2
            layers[i].gamma, layers[i].beta = _data(gamma), _data(beta)
            layers[i].rmean, layers[i].rvar, layers[i].work = _data(rmean), _data(rvar), _data(work)
            layers[i].momentum, layers[i].eps = momentum, eps
            if train:
                for arr, what in ((xc, "xc"), (xn, "xn")):
                    _check(arr, what, i, typenum, n, m, True)
                for arr, what in ((std, "std"), (mean, "mean"), (dgamma, "dgamma"),
                                  (dbeta, "dbeta")):
                    _check(arr, what, i, typenum, m, -1, True)
                layers[i].xc, layers[i].xn, layers[i].std = _data(xc), _data(xn), _data(std)
                layers[i].mean, layers[i].dgamma = _data(mean), _data(dgamma)
                layers[i].dbeta = _data(dbeta)
        entry = None if drop is None else drop[i]
        if entry is not None:
            ratio = entry[len(entry) - 1]
            if not (0 <= ratio <= 1):
                raise ValueError(f"dropout ratio must lie in [0, 1], got {ratio}")
            if train:
                dmask, key = entry[0], entry[1]
                _check(dmask, "dropout mask", i, cnp.NPY_UINT8, n, m, True)
                layers[i].drop = 1
                layers[i].dmask = <unsigned char*>_data(dmask)
                layers[i].key = <uint64_t>key
                layers[i].threshold = _norm.dropout_threshold(ratio)
            else:
                layers[i].drop = 2
                layers[i].keep = 1.0 - ratio
    return 0


def mlp_predict(x, list Ws, list bs, list hs, int act, list bn=None, list drop=None):
    """Forward pass: hs[i] = layer outputs for x (N rows); hs[-1] ends as the logits.

    bn, drop: batch normalisation and dropout of the hidden layers in inference mode
    (see _attach_extras). Every array is checked against x and the weights first
    (ValueError)."""
    if act < RELU or act > IDENTITY:
        raise ValueError(f"unknown activation code {act}")
    cdef Py_ssize_t L = len(Ws), n = len(x)
    cdef Layer *layers = _layers(x, Ws, bs, hs, None, None, None, None)
    try:
        _attach_extras(layers, L, n, cnp.PyArray_TYPE(<cnp.ndarray>x), bn, drop, False, False)
    except BaseException:
        free(layers)
        raise
    cdef void *xp = _data(x)
    try:
        with nogil:
            if cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_FLOAT32:
                _forward(<const float*>xp, layers, L, n, act, False, True)
            else:
                _forward(<const double*>xp, layers, L, n, act, False, True)
    finally:
        free(layers)


def predict_ready(object net, object x, tuple classes, list names):
    """``predict``'s whole call in the usual case: the scores of ``x`` (a new array) when
    ``net`` is fusable as it is now (see ``fusable``), its layers are named ``names`` and
    ``x`` is already what ``predict`` would check it into (an ndarray, not a subclass,
    2-D, non-empty, of the weights' dtype, aligned, native and C-contiguous, with the
    network's input width); else None, and ``predict`` takes its checked path, which
    explains anything wrong. One compiled call instead of the checks, plan and buffers in
    Python: their cost shows at small batches (a predict of 100 rows takes ~0.1 ms)."""
    cdef Py_ssize_t i, n
    cdef cnp.npy_intp dims[2]
    if type(x) is not cnp.ndarray or cnp.PyArray_NDIM(<cnp.ndarray>x) != 2:
        return None
    layer_dict = net.layers
    if not isinstance(layer_dict, dict) or list(layer_dict) != names:
        return None
    found = _fusable_core(net, _values_in_order(layer_dict), classes, False)
    if found is None:
        return None
    Ws, bs, sizes, act, output = found
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>Ws[0])
    n = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
    if not ready(x, typenum, False) or n == 0 or cnp.PyArray_DIMS(<cnp.ndarray>x)[1] != sizes[0]:
        return None
    cdef list hs = []
    dims[0] = n
    for i in range(1, len(sizes)):
        dims[1] = sizes[i]
        hs.append(cnp.PyArray_EMPTY(2, dims, typenum, 0))
    mlp_predict(x, Ws, bs, hs, act)
    return hs[len(hs) - 1]


cdef int _check_targets(object labels, object targets, object sample_weight, int output,
                        int typenum, Py_ssize_t n, Py_ssize_t c) except -1:
    """labels: (n,) intp in [0, c) (softmax only); or targets: (n, c) of typenum;
    sample_weight: (n,) or None."""
    cdef Py_ssize_t i
    cdef const Py_ssize_t *lp
    if (labels is None) == (targets is None) or (output != SOFTMAX_CE and targets is None):
        raise ValueError("pass labels or targets (targets for every output but softmax)")
    if labels is not None:
        _check(labels, "labels", -1, cnp.NPY_INTP, n, -1, False)
        lp = <const Py_ssize_t*>_data(labels)
        for i in range(n):
            if lp[i] < 0 or lp[i] >= c:
                raise ValueError(f"labels must lie in [0, {c}), got {lp[i]}")
    else:
        _check(targets, "targets", -1, typenum, n, c, False)
    if sample_weight is not None:
        _check(sample_weight, "sample_weight", -1, typenum, n, -1, False)
    return 0


def mlp_gradient(x, labels, targets, sample_weight, list Ws, list bs, list hs, list masks,
                 list ds, list dWs, list dbs, int act, int output, double weight_decay,
                 double sgd_lr=0, list bn=None, list drop=None):
    """Forward, loss and backward of the whole network.

    Returns (mean data loss, sum of W**2 over all layers when weight_decay != 0 else 0).

    x (N, D); labels (N,) intp, or None; targets (N, C) one-hot rows or
    regression targets, or None; sample_weight (N,) or None (all 1); per
    layer i: Ws[i] (K, M), bs[i] (M,), hs[i] (N, M) outputs (the last ends as
    the output: softmax, identity, sigmoid or exp by code), masks[i] (N, M)
    uint8 for hidden ReLU layers (else None), ds[i] (N, M) output gradients
    (the last is w * (y - t) / N), dWs[i], dbs[i] the parameter gradients
    (dW includes weight_decay * W). output: 0 softmax + cross-entropy,
    1 identity + 0.5 * squared error, 2 sigmoid + binary cross-entropy, 3 exp + half
    Poisson deviance (targets for all but 0). sgd_lr > 0 fuses an SGD step into the
    backward pass: Ws and bs are updated in place and dWs is left untouched.
    bn, drop: batch normalisation and dropout of the hidden layers (training mode, see
    _attach_extras); with sgd_lr > 0 gamma and beta take their SGD step too.
    A NaN or infinity in x gives a NaN loss with nothing updated (parameters, running
    statistics, masks) and only the first layer's output written.
    Every array (and every label) is checked before the GIL is released.
    """
    if act < RELU or act > IDENTITY:
        raise ValueError(f"unknown activation code {act}")
    if output < SOFTMAX_CE or output > POISSON:
        raise ValueError(f"unknown output code {output}")
    if act == RELU and (masks is None or any(m is None for m in masks[:len(masks) - 1])):
        raise ValueError("a ReLU network needs a mask for every hidden layer")
    if ds is None or dbs is None or (dWs is None and sgd_lr == 0):
        raise ValueError("ds, dbs and (without a fused SGD step) dWs are needed")
    cdef Py_ssize_t L = len(Ws), n = len(x)
    cdef Layer *layers = _layers(x, Ws, bs, hs, masks, ds, dWs, dbs, sgd_lr != 0)
    try:
        _check_targets(labels, targets, sample_weight, output, cnp.PyArray_TYPE(<cnp.ndarray>x),
                       n, layers[L - 1].m)
        _attach_extras(layers, L, n, cnp.PyArray_TYPE(<cnp.ndarray>x), bn, drop, True,
                       sgd_lr != 0)
    except BaseException:
        free(layers)
        raise
    cdef void *xp = _data(x)
    cdef const Py_ssize_t *lp = <const Py_ssize_t*>(NULL if labels is None else _data(labels))
    cdef void *tp = NULL if targets is None else _data(targets)
    cdef void *wp = NULL if sample_weight is None else _data(sample_weight)
    cdef bint single = cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_FLOAT32
    cdef double loss, sum_sq = 0
    try:
        with nogil:   # a non-finite x: a NaN loss and nothing written past the first product
            if single:
                if _forward(<const float*>xp, layers, L, n, act, True):
                    loss = NAN
                else:
                    loss = _backward(<const float*>xp, lp, <const float*>tp, <const float*>wp,
                                     output, layers, L, n, act, <float>weight_decay,
                                     <float>sgd_lr, &sum_sq)
            else:
                if _forward(<const double*>xp, layers, L, n, act, True):
                    loss = NAN
                else:
                    loss = _backward(<const double*>xp, lp, <const double*>tp,
                                     <const double*>wp, output, layers, L, n, act,
                                     weight_decay, sgd_lr, &sum_sq)
    finally:
        free(layers)
    return loss / n, sum_sq


# ---------------------------------------------------------------- loss and accuracy, fused

cdef double _sum_sq_weights(Layer *layers, Py_ssize_t L, bint single) noexcept nogil:
    """sum of W**2 over all layers, in double, in a fixed order (as _backward sums it)."""
    cdef Py_ssize_t i, j
    cdef double total = 0
    cdef const float *wf
    cdef const double *wd
    for i in range(L):
        if single:
            wf = <const float*>layers[i].W
            for j in range(layers[i].k * layers[i].m):
                total += <double>wf[j] * wf[j]
        else:
            wd = <const double*>layers[i].W
            for j in range(layers[i].k * layers[i].m):
                total += wd[j] * wd[j]
    return total


def mlp_loss(x, labels, targets, list Ws, list bs, list hs, list masks, list ds, int act,
             int output, bint sum_sq_weights):
    """Forward and loss of the whole network, no backward: what ``loss`` computes.

    Returns (mean data loss, sum of W**2 over all layers when sum_sq_weights else 0).
    Buffers as for mlp_gradient (hs, masks, ds; no parameter gradients): hs[-1] ends as
    the output (softmax, identity, sigmoid or exp by code), ds[-1] as (y - t) / N. Every
    array and label is checked before the GIL is released.
    """
    if act < RELU or act > IDENTITY:
        raise ValueError(f"unknown activation code {act}")
    if output < SOFTMAX_CE or output > POISSON:
        raise ValueError(f"unknown output code {output}")
    if act == RELU and (masks is None or any(m is None for m in masks[:len(masks) - 1])):
        raise ValueError("a ReLU network needs a mask for every hidden layer")
    if ds is None:
        raise ValueError("ds is needed")
    cdef Py_ssize_t L = len(Ws), n = len(x)
    cdef Layer *layers = _layers(x, Ws, bs, hs, masks, ds, None, None)
    try:
        _check_targets(labels, targets, None, output, cnp.PyArray_TYPE(<cnp.ndarray>x),
                       n, layers[L - 1].m)
    except BaseException:
        free(layers)
        raise
    cdef void *xp = _data(x)
    cdef const Py_ssize_t *lp = <const Py_ssize_t*>(NULL if labels is None else _data(labels))
    cdef void *tp = NULL if targets is None else _data(targets)
    cdef bint single = cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_FLOAT32
    cdef Py_ssize_t c = layers[L - 1].m
    cdef double loss, sum_sq = 0
    try:
        with nogil:
            if single:
                _forward(<const float*>xp, layers, L, n, act)
                loss = _output_loss(output, <float*>layers[L - 1].h, <float*>layers[L - 1].d,
                                    lp, <const float*>tp, NULL, n, c)
            else:
                _forward(<const double*>xp, layers, L, n, act)
                loss = _output_loss(output, <double*>layers[L - 1].h, <double*>layers[L - 1].d,
                                    lp, <const double*>tp, NULL, n, c)
            if sum_sq_weights:
                sum_sq = _sum_sq_weights(layers, L, single)
    finally:
        free(layers)
    return loss / n, sum_sq


cdef Py_ssize_t _count_argmax_hits(const floating *y, const Py_ssize_t *labels, Py_ssize_t n,
                                   Py_ssize_t c) noexcept nogil:
    """How many rows i have argmax(y[i]) == labels[i], argmax as numpy's: the first
    maximum, or the first NaN when the row holds one."""
    cdef Py_ssize_t i, j, best, hits = 0
    cdef floating v, top
    for i in range(n):
        best = 0
        top = y[i * c]
        if top == top:   # not NaN
            for j in range(1, c):
                v = y[i * c + j]
                if v != v:
                    best = j
                    break
                if v > top:
                    top = v
                    best = j
        if best == labels[i]:
            hits += 1
    return hits


def mlp_accuracy(x, labels, list Ws, list bs, list hs, int act):
    """Forward pass into hs, then the number of rows whose highest score is at their
    label (labels: (N,) intp in [0, C)); what ``accuracy`` counts."""
    if act < RELU or act > IDENTITY:
        raise ValueError(f"unknown activation code {act}")
    cdef Py_ssize_t L = len(Ws), n = len(x), hits
    cdef Layer *layers = _layers(x, Ws, bs, hs, None, None, None, None)
    try:
        _check_targets(labels, None, None, SOFTMAX_CE, cnp.PyArray_TYPE(<cnp.ndarray>x),
                       n, layers[L - 1].m)
    except BaseException:
        free(layers)
        raise
    cdef void *xp = _data(x)
    cdef const Py_ssize_t *lp = <const Py_ssize_t*>_data(labels)
    cdef Py_ssize_t c = layers[L - 1].m
    try:
        with nogil:
            if cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_FLOAT32:
                _forward(<const float*>xp, layers, L, n, act)
                hits = _count_argmax_hits(<const float*>layers[L - 1].h, lp, n, c)
            else:
                _forward(<const double*>xp, layers, L, n, act)
                hits = _count_argmax_hits(<const double*>layers[L - 1].h, lp, n, c)
    finally:
        free(layers)
    return hits


# ---------------------------------------------------------------- per-step checks in C
# A small network's step is ~100 us, of which Python-level checks took ~10:
# these do the common case in one call and leave every error message (and
# every unusual input) to the checked Python path.

cdef inline bint _own_methods(object layer):
    """True when ``layer`` carries its own forward or backward (set on the instance)."""
    cdef object d = getattr(layer, "__dict__", None)
    return type(d) is dict and ("forward" in <dict>d or "backward" in <dict>d)


def fusable(object net, tuple classes, bint writeable):
    """(Ws, bs, sizes, activation code, output code) of network ``net`` when the fused
    kernels can run it as it is now, else None (its layer-by-layer path then runs, and
    explains anything wrong).

    Everything is re-derived from what ``net`` holds and checked, every call: its
    ``layers`` are Affine, activation, Affine, ..., Affine with one activation class
    over aligned, native, C-contiguous float32/float64 arrays of one dtype (writeable
    when asked) whose shapes chain, none with a ``forward``/``backward`` of its own (set
    on the instance); its ``last_layer`` is a loss the kernel has; and
    its public attributes (``input_size``, ``hidden_size_list``, ``output_size``,
    ``dtype``, ``activation``, ``loss_name``, ``hidden_layer_num``) describe exactly
    that network. ``classes`` = (Affine, (Relu, Sigmoid, Tanh, Identity), (SoftmaxWithLoss,
    MSELoss, SigmoidWithLoss, PoissonLoss)): the activation and loss classes in the order
    of their codes.
    """
    layer_dict = net.layers
    if not isinstance(layer_dict, dict):
        return None
    return _fusable_core(net, _values_in_order(layer_dict), classes, writeable)


cdef list _values_in_order(object layer_dict):
    """The values of ``net.layers`` (a dict or a subclass) in the order iterating it gives,
    the order the layer-by-layer path runs them. An OrderedDict's order is its own after
    ``move_to_end``, not the order of the dict underneath, which a ``<dict>`` cast reads:
    those two orders must never give two different networks."""
    if type(layer_dict) is dict:
        return list((<dict>layer_dict).values())
    return list(layer_dict.values())


cdef object _fusable_core(object net, list layers, tuple classes, bint writeable):
    """fusable's checks on ``layers``, the network's Affine and activation layers in order
    (all of ``net.layers``, or those left once batch norm and dropout are taken out)."""
    cdef Py_ssize_t i, L, width = -1
    cdef int typenum = -1, act = RELU, output
    cdef cnp.npy_intp *dims
    affine_type, activation_types, output_types = classes
    L = len(layers)
    if L % 2 == 0:
        return None
    last_layer = net.last_layer
    if _own_methods(last_layer):
        return None
    for output in range(len(output_types)):
        if type(last_layer) is output_types[output]:
            break
    else:
        return None
    if L > 1:
        for i in range(len(activation_types)):
            if type(layers[1]) is activation_types[i]:
                act = i
                break
        else:
            return None
    cdef list Ws = [], bs = [], sizes = []
    for i in range(L):
        layer = layers[i]
        if _own_methods(layer):
            return None
        if i % 2 == 1:
            if type(layer) is not type(layers[1]):
                return None
            continue
        if type(layer) is not affine_type:
            return None
        W, b = layer.W, layer.b
        if typenum == -1 and isinstance(W, cnp.ndarray):
            typenum = cnp.PyArray_TYPE(<cnp.ndarray>W)
            if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64:
                return None
        if not (ready(W, typenum, writeable) and ready(b, typenum, writeable)):
            return None
        dims = cnp.PyArray_DIMS(<cnp.ndarray>W)
        if (cnp.PyArray_NDIM(<cnp.ndarray>W) != 2 or (width >= 0 and dims[0] != width)
                or dims[0] == 0 or dims[1] == 0):
            return None
        if width < 0:
            sizes.append(dims[0])
        width = dims[1]
        sizes.append(width)
        if cnp.PyArray_NDIM(<cnp.ndarray>b) != 1 or cnp.PyArray_DIMS(<cnp.ndarray>b)[0] != width:
            return None
        Ws.append(W)
        bs.append(b)
    # the public attributes must describe this same network
    n_affine = len(Ws)
    dtype = net.dtype
    if not ((dtype is np.float32 and typenum == cnp.NPY_FLOAT32)
            or (dtype is np.float64 and typenum == cnp.NPY_FLOAT64)):
        return None
    if (net.input_size != sizes[0] or net.output_size != sizes[n_affine]
            or net.hidden_size_list != sizes[1:n_affine] or net.hidden_layer_num != n_affine - 1
            or net.loss_name != OUTPUT_NAMES[output]
            or (n_affine > 1 and net.activation != ACTIVATION_NAMES[act])):
        return None
    return Ws, bs, tuple(sizes), act, output


def fusable_extend(object net, list names, list kinds, tuple classes, object bn_class,
                   object drop_class, bint writeable):
    """fusable for a network with batch normalisation and dropout between its layers:
    (Ws, bs, sizes, activation code, output code, bn, drop) or None. ``names``: the layer
    names the kernel runs, in order, each with its kind in ``kinds`` ('bn', 'drop',
    'affine' or 'core'); ``net.layers`` must hold exactly those. bn, drop: per hidden
    layer its BatchNormalization (of exactly ``bn_class``, gamma and beta aligned,
    C-contiguous arrays of the weights' dtype and the layer's width, writeable when asked)
    or Dropout (exactly ``drop_class``), or None. No layer may carry its own forward or
    backward."""
    cdef Py_ssize_t i, affine = -1   # the index of the latest Affine
    cdef int typenum
    cdef cnp.ndarray arr
    layer_dict = net.layers
    if not isinstance(layer_dict, dict) or len(layer_dict) != len(names) \
            or len(kinds) != len(names):
        return None
    cdef list core = [], bn = [], drop = []
    for i, (name, layer) in enumerate(zip(list(layer_dict), _values_in_order(layer_dict))):
        if name != names[i]:
            return None
        kind = kinds[i]
        if kind == "bn" or kind == "drop":
            if affine < 0 or _own_methods(layer) \
                    or type(layer) is not (bn_class if kind == "bn" else drop_class):
                return None
            (bn if kind == "bn" else drop)[affine] = layer
            continue
        core.append(layer)
        if kind == "affine":
            affine += 1
            bn.append(None)
            drop.append(None)
    found = _fusable_core(net, core, classes, writeable)
    if found is None:
        return None
    Ws, bs, sizes, act, output = found
    typenum = cnp.PyArray_TYPE(<cnp.ndarray>Ws[0])
    for i in range(affine):   # the hidden layers (all Affines but the last)
        layer = bn[i]
        if layer is None:
            continue
        for a in (layer.gamma, layer.beta):
            if not ready(a, typenum, writeable):
                return None
            arr = <cnp.ndarray>a
            if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIMS(arr)[0] != sizes[i + 1]:
                return None
    return Ws, bs, sizes, act, output, bn[:affine], drop[:affine]


def params_hold(object params, list names, list Ws, list bs, list bn):
    """True when ``params`` holds exactly the arrays the fused SGD step updates, under
    ``names`` (W1, b1, W2, b2, ..., then gamma{i}, beta{i} of each batch norm of ``bn``,
    None where a hidden layer has none): the same objects, and nothing else."""
    cdef Py_ssize_t i, L = len(Ws), j = 2 * len(Ws)
    if len(bs) != L:
        return False
    for b in bn:
        if b is not None:
            j += 2
    if len(params) != j or len(names) != j:
        return False
    for i in range(L):
        if params.get(names[2 * i]) is not Ws[i] or params.get(names[2 * i + 1]) is not bs[i]:
            return False
    j = 2 * L
    for b in bn:
        if b is not None:
            if params.get(names[j]) is not b.gamma or params.get(names[j + 1]) is not b.beta:
                return False
            j += 2
    return True


def overlaps(cnp.ndarray block, object a):
    """True when ndarray ``a`` may share memory with the contiguous ``block``
    (compares the byte ranges they span; False for anything that is not an ndarray)."""
    if not isinstance(a, cnp.ndarray):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int k
    cdef char *lo = <char*>cnp.PyArray_DATA(arr)
    cdef char *hi = lo
    cdef Py_ssize_t extent
    if cnp.PyArray_SIZE(arr) == 0:
        return False
    for k in range(cnp.PyArray_NDIM(arr)):
        extent = (cnp.PyArray_DIMS(arr)[k] - 1) * cnp.PyArray_STRIDES(arr)[k]
        if extent < 0:
            lo += extent
        else:
            hi += extent
    hi += cnp.PyArray_ITEMSIZE(arr)
    cdef char *start = <char*>cnp.PyArray_DATA(block)
    cdef char *stop = start + cnp.PyArray_NBYTES(block)
    return lo < stop and start < hi


cdef inline Py_ssize_t _label(const char *src, Py_ssize_t stride, Py_ssize_t i,
                              bint int32) noexcept nogil:
    return (<const int*>(src + i * stride))[0] if int32 else (<const Py_ssize_t*>(src + i * stride))[0]


cdef bint _copy_labels(const char *src, Py_ssize_t stride, Py_ssize_t *out, Py_ssize_t n,
                       Py_ssize_t n_classes, bint int32) noexcept nogil:
    """Check every label lies in [0, n_classes), then copy them all; False copies nothing."""
    cdef Py_ssize_t i, v
    for i in range(n):
        v = _label(src, stride, i, int32)
        if v < 0 or v >= n_classes:
            return False
    for i in range(n):
        out[i] = _label(src, stride, i, int32)
    return True


def copy_labels(object t, cnp.ndarray out, Py_ssize_t n_classes):
    """Copy labels t into out (intp, length N) and return True when t is a 1-D native-order
    signed integer array (32 bits or intp) of N labels, all in [0, n_classes); else
    return False with out untouched (the caller's checked path then explains)."""
    if not isinstance(t, cnp.ndarray):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>t
    cdef Py_ssize_t itemsize = cnp.PyArray_ITEMSIZE(arr)
    cdef bint int32 = itemsize == 4
    if not (cnp.PyArray_ISSIGNED(arr) and (int32 or itemsize == sizeof(Py_ssize_t))):
        return False
    if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIMS(arr)[0] != cnp.PyArray_DIMS(out)[0]:
        return False
    if not (cnp.PyArray_ISNOTSWAPPED(arr) and cnp.PyArray_ISALIGNED(arr)):
        return False
    cdef const char *src = <const char*>cnp.PyArray_DATA(arr)
    cdef Py_ssize_t stride = cnp.PyArray_STRIDES(arr)[0], n = cnp.PyArray_DIMS(arr)[0]
    cdef Py_ssize_t *dst = <Py_ssize_t*>cnp.PyArray_DATA(out)
    cdef bint ok
    with nogil:
        ok = _copy_labels(src, stride, dst, n, n_classes, int32)
    return ok
