"""A whole MLP in one compiled call: forward, softmax-CE, backward, over layer lists.

The network (fastmlp/networks.py) hands over its weights and a workspace of
preallocated buffers as lists of C-contiguous arrays of one float dtype; the
Python side has checked every shape. Per layer: one GEMM, then one fused
pass (bias + activation + mask) forward; backward one or two GEMMs and one
fused pass (activation derivative), the first layer's dx skipped. The
softmax, loss and (y - t)/N come out of one pass per row. Every reduction
(db, loss) runs in a fixed order, so the bits never depend on threads.
"""
from cython cimport floating
from libc.math cimport isfinite, log
from libc.stdlib cimport free, malloc
cimport numpy as cnp

from _arrays cimport ready
from _blas cimport gemm, fastmlp_set_blas
from _scalar cimport exp_, sigmoid
from _simd cimport bias, bias_relu, column_sums, relu_backward

cnp.import_array()


def set_blas(size_t sgemm, size_t dgemm, size_t sgemv, size_t dgemv, bint ilp64):
    """Point this module's GEMM at the Fortran sgemm/dgemm (and gemv, or 0) at these addresses."""
    fastmlp_set_blas(sgemm, dgemm, sgemv, dgemv, ilp64)

cdef enum Activation:
    RELU = 0
    SIGMOID = 1

cdef enum Output:
    SOFTMAX_CE = 0    # softmax + cross-entropy on labels or one-hot rows
    MSE = 1           # identity + 0.5 * squared error on float targets


cdef inline void* _data(object a):
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline Py_ssize_t _cols(object a):
    return cnp.PyArray_DIMS(<cnp.ndarray>a)[1]


cdef void _bias_activation(floating *h, const floating *b, unsigned char *mask,
                           Py_ssize_t n, Py_ssize_t m, int act) noexcept nogil:
    """h = act(h + b) row by row; mask = (h + b <= 0) for ReLU when mask is given."""
    cdef Py_ssize_t i, j
    cdef floating *row
    if act == RELU:
        bias_relu(h, b, mask, n, m)
        return
    for i in range(n):
        row = h + i * m
        for j in range(m):
            row[j] = sigmoid(row[j] + b[j])


cdef void _activation_backward(floating *d, const floating *h, const unsigned char *mask,
                               Py_ssize_t size, int act) noexcept nogil:
    """d *= act'(.) in place: zero where masked (ReLU), times (1 - h) * h (sigmoid)."""
    cdef Py_ssize_t i
    if act == RELU:
        relu_backward(d, mask, d, 0, size)
    else:
        for i in range(size):
            d[i] = d[i] * (1 - h[i]) * h[i]


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
            row[j] = exp_(row[j] - mx)
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


cdef Layer* _layers(list Ws, list bs, list hs, list masks, list ds, list dWs, list dbs) except NULL:
    """Collect the layers' pointers and sizes (freed by the caller)."""
    cdef Py_ssize_t i, L = len(Ws)
    cdef Layer *layers = <Layer*>malloc(L * sizeof(Layer))
    if layers == NULL:
        raise MemoryError()
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


cdef void _forward(const floating *x, Layer *layers, Py_ssize_t L, Py_ssize_t n,
                   int act) noexcept nogil:
    """h[i] = act(h[i-1] @ W[i] + b[i]); the last layer's logits stay unactivated."""
    cdef Py_ssize_t i
    cdef const floating *a = x
    for i in range(L):
        gemm(False, False, n, layers[i].m, layers[i].k, 1, a, layers[i].k,
             <const floating*>layers[i].W, layers[i].m, 0, <floating*>layers[i].h, layers[i].m)
        if i < L - 1:
            _bias_activation(<floating*>layers[i].h, <const floating*>layers[i].b,
                             layers[i].mask, n, layers[i].m, act)
        else:
            bias(<floating*>layers[i].h, <const floating*>layers[i].b, n, layers[i].m)
        a = <const floating*>layers[i].h


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
    if output == SOFTMAX_CE:
        loss = _softmax_ce(<floating*>layers[L - 1].h, <floating*>layers[L - 1].d, labels, onehot,
                           weights, n, layers[L - 1].m)
    else:
        loss = _mse(<floating*>layers[L - 1].h, <floating*>layers[L - 1].d, onehot, weights,
                    n, layers[L - 1].m)
    if sgd_lr != 0 and not isfinite(loss):
        return loss
    for i in range(L - 1, -1, -1):
        k, m = layers[i].k, layers[i].m
        d, W, dW = <floating*>layers[i].d, <floating*>layers[i].W, <floating*>layers[i].dW
        b, db = <floating*>layers[i].b, <floating*>layers[i].db
        a = x if i == 0 else <const floating*>layers[i - 1].h
        if i > 0:   # d[i-1] = (d @ W.T) * act'(h[i-1]), with W as it was in forward
            gemm(False, True, n, k, m, 1, d, m, W, m, 0, <floating*>layers[i - 1].d, k)
            _activation_backward(<floating*>layers[i - 1].d, a, layers[i - 1].mask, n * k, act)
        if weight_decay != 0:
            for j in range(k * m):
                sum_sq_weights[0] += <double>W[j] * W[j]
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


def mlp_predict(x, list Ws, list bs, list hs, int act):
    """Forward pass: hs[i] = layer outputs for x (N rows); hs[-1] ends as the logits."""
    cdef Py_ssize_t L = len(Ws), n = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
    cdef Layer *layers = _layers(Ws, bs, hs, None, None, None, None)
    cdef void *xp = _data(x)
    try:
        with nogil:
            if cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_FLOAT32:
                _forward(<const float*>xp, layers, L, n, act)
            else:
                _forward(<const double*>xp, layers, L, n, act)
    finally:
        free(layers)


def mlp_gradient(x, labels, targets, sample_weight, list Ws, list bs, list hs, list masks,
                 list ds, list dWs, list dbs, int act, int output, double weight_decay,
                 double sgd_lr=0):
    """Forward, loss and backward of the whole network.

    Returns (mean data loss, sum of W**2 over all layers when weight_decay != 0 else 0).

    x (N, D); labels (N,) intp, or None; targets (N, C) one-hot rows or
    regression targets, or None; sample_weight (N,) or None (all 1); per
    layer i: Ws[i] (K, M), bs[i] (M,), hs[i] (N, M) outputs (the last ends as
    the softmax for output 0, the identity for output 1), masks[i] (N, M)
    uint8 for hidden ReLU layers (else None), ds[i] (N, M) output gradients
    (the last is w * (y - t) / N), dWs[i], dbs[i] the parameter gradients
    (dW includes weight_decay * W). output: 0 softmax + cross-entropy,
    1 identity + 0.5 * squared error. sgd_lr > 0 fuses an SGD step into the
    backward pass: Ws and bs are updated in place and dWs is left untouched.
    """
    cdef Py_ssize_t L = len(Ws), n = cnp.PyArray_DIMS(<cnp.ndarray>x)[0]
    cdef Layer *layers = _layers(Ws, bs, hs, masks, ds, dWs, dbs)
    cdef void *xp = _data(x)
    cdef const Py_ssize_t *lp = NULL if labels is None else <const Py_ssize_t*>_data(labels)
    cdef void *tp = NULL if targets is None else _data(targets)
    cdef void *wp = NULL if sample_weight is None else _data(sample_weight)
    cdef bint single = cnp.PyArray_TYPE(<cnp.ndarray>x) == cnp.NPY_FLOAT32
    cdef double loss, sum_sq = 0
    try:
        with nogil:
            if single:
                _forward(<const float*>xp, layers, L, n, act)
                loss = _backward(<const float*>xp, lp, <const float*>tp, <const float*>wp, output,
                                 layers, L, n, act, <float>weight_decay, <float>sgd_lr, &sum_sq)
            else:
                _forward(<const double*>xp, layers, L, n, act)
                loss = _backward(<const double*>xp, lp, <const double*>tp, <const double*>wp,
                                 output, layers, L, n, act, weight_decay, sgd_lr, &sum_sq)
    finally:
        free(layers)
    return loss / n, sum_sq


# ---------------------------------------------------------------- per-step checks in C
# A small network's step is ~100 us, of which Python-level checks took ~10:
# these do the common case in one call and leave every error message (and
# every unusual input) to the checked Python path.

def parameters(list affines, tuple sizes, int typenum, bint writeable):
    """(Ws, bs) of the Affine layers, or None when one is not an aligned, native-order,
    C-contiguous array of typenum (writeable when asked): the layer-by-layer path
    then runs. A wrong shape raises ValueError, since the kernels trust the shapes."""
    cdef Py_ssize_t i, L = len(affines)
    cdef list Ws = [], bs = []
    cdef cnp.npy_intp *dims
    for i in range(L):
        W, b = affines[i].W, affines[i].b
        if not (ready(W, typenum, writeable) and ready(b, typenum, writeable)):
            return None
        dims = cnp.PyArray_DIMS(<cnp.ndarray>W)
        if (cnp.PyArray_NDIM(<cnp.ndarray>W) != 2 or dims[0] != <Py_ssize_t>sizes[i]
                or dims[1] != <Py_ssize_t>sizes[i + 1]):
            raise ValueError(f"a layer's parameter has shape {W.shape}, "
                             f"expected {(sizes[i], sizes[i + 1])}")
        dims = cnp.PyArray_DIMS(<cnp.ndarray>b)
        if cnp.PyArray_NDIM(<cnp.ndarray>b) != 1 or dims[0] != <Py_ssize_t>sizes[i + 1]:
            raise ValueError(f"a layer's parameter has shape {b.shape}, expected {(sizes[i + 1],)}")
        Ws.append(W)
        bs.append(b)
    return Ws, bs


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
