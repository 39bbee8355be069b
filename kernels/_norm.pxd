# The dropout and batch-normalisation passes of fastmlp_norm.h, fused over float/double.
from cython cimport floating
from libc.math cimport floor
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "fastmlp_norm.h" nogil:
    void fastmlp_dropout_forward_f(const float *x, float *out, unsigned char *mask, uint64_t key,
                                   uint32_t threshold, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_dropout_forward_d(const double *x, double *out, unsigned char *mask, uint64_t key,
                                   uint32_t threshold, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_dropout_backward_f(const float *dout, const unsigned char *mask, float *dx,
                                    Py_ssize_t start, Py_ssize_t end)
    void fastmlp_dropout_backward_d(const double *dout, const unsigned char *mask, double *dx,
                                    Py_ssize_t start, Py_ssize_t end)
    void fastmlp_scale_f(const float *x, float *out, float s, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_scale_d(const double *x, double *out, double s, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_bn_train_f(const float *x, const float *gamma, const float *beta, double eps,
                            double momentum, Py_ssize_t n, Py_ssize_t m, float *out, float *xc,
                            float *xn, float *std, float *mean, float *running_mean,
                            float *running_var)
    void fastmlp_bn_train_d(const double *x, const double *gamma, const double *beta, double eps,
                            double momentum, Py_ssize_t n, Py_ssize_t m, double *out, double *xc,
                            double *xn, double *std, double *mean, double *running_mean,
                            double *running_var)
    void fastmlp_bn_relu_train_f(float *h, const float *b, const float *gamma, const float *beta,
                                 double eps, double momentum, Py_ssize_t n, Py_ssize_t m,
                                 float *xc, float *xn, float *std, float *mean,
                                 float *running_mean, float *running_var, unsigned char *mask,
                                 unsigned char *dmask, uint64_t key, uint32_t threshold)
    void fastmlp_bn_relu_train_d(double *h, const double *b, const double *gamma,
                                 const double *beta, double eps, double momentum, Py_ssize_t n,
                                 Py_ssize_t m, double *xc, double *xn, double *std, double *mean,
                                 double *running_mean, double *running_var, unsigned char *mask,
                                 unsigned char *dmask, uint64_t key, uint32_t threshold)
    void fastmlp_bn_infer_f(const float *x, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, double eps,
                            Py_ssize_t n, Py_ssize_t m, float *out, float *scale)
    void fastmlp_bn_infer_d(const double *x, const double *gamma, const double *beta,
                            const double *running_mean, const double *running_var, double eps,
                            Py_ssize_t n, Py_ssize_t m, double *out, double *scale)
    void fastmlp_bn_backward_f(const float *dout, const float *xn, const float *gamma,
                               const float *std, Py_ssize_t n, Py_ssize_t m, float *dx,
                               float *dgamma, float *dbeta, float *work)
    void fastmlp_bn_backward_d(const double *dout, const double *xn, const double *gamma,
                               const double *std, Py_ssize_t n, Py_ssize_t m, double *dx,
                               double *dgamma, double *dbeta, double *work)
    void fastmlp_bn_relu_backward_f(float *d, const unsigned char *dmask,
                                    const unsigned char *mask, const float *xn,
                                    const float *gamma, const float *std, Py_ssize_t n,
                                    Py_ssize_t m, float *dgamma, float *dbeta, float *db,
                                    float *work)
    void fastmlp_bn_relu_backward_d(double *d, const unsigned char *dmask,
                                    const unsigned char *mask, const double *xn,
                                    const double *gamma, const double *std, Py_ssize_t n,
                                    Py_ssize_t m, double *dgamma, double *dbeta, double *db,
                                    double *work)


cdef inline uint32_t dropout_threshold(double ratio) noexcept nogil:
    """The integer form of ``u > ratio`` for u = h * 2**-32: keep when h > threshold
    (ratio in [0, 1], checked by the caller; 1 keeps nothing)."""
    if ratio >= 1:
        return 0xFFFFFFFFU
    return <uint32_t>floor(ratio * 4294967296.0)


cdef inline void dropout_forward(const floating *x, floating *out, unsigned char *mask,
                                 uint64_t key, uint32_t threshold, Py_ssize_t start,
                                 Py_ssize_t end) noexcept nogil:
    """out = x * keep, mask = keep over [start, end) (keep: the hash of key and index)."""
    if floating is float:
        fastmlp_dropout_forward_f(x, out, mask, key, threshold, start, end)
    else:
        fastmlp_dropout_forward_d(x, out, mask, key, threshold, start, end)


cdef inline void dropout_backward(const floating *dout, const unsigned char *mask, floating *dx,
                                  Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """dx = dout * mask over [start, end); dx may be dout."""
    if floating is float:
        fastmlp_dropout_backward_f(dout, mask, dx, start, end)
    else:
        fastmlp_dropout_backward_d(dout, mask, dx, start, end)


cdef inline void scale(const floating *x, floating *out, floating s, Py_ssize_t start,
                       Py_ssize_t end) noexcept nogil:
    """out = x * s over [start, end)."""
    if floating is float:
        fastmlp_scale_f(x, out, s, start, end)
    else:
        fastmlp_scale_d(x, out, s, start, end)


cdef inline void bn_train(const floating *x, const floating *gamma, const floating *beta,
                          double eps, double momentum, Py_ssize_t n, Py_ssize_t m,
                          floating *out, floating *xc, floating *xn, floating *std,
                          floating *mean, floating *running_mean,
                          floating *running_var) noexcept nogil:
    """Training-mode batch normalisation of x (n, m); see fastmlp_norm.h."""
    if floating is float:
        fastmlp_bn_train_f(x, gamma, beta, eps, momentum, n, m, out, xc, xn, std, mean,
                           running_mean, running_var)
    else:
        fastmlp_bn_train_d(x, gamma, beta, eps, momentum, n, m, out, xc, xn, std, mean,
                           running_mean, running_var)


cdef inline void bn_relu_train(floating *h, const floating *b, const floating *gamma,
                               const floating *beta, double eps, double momentum, Py_ssize_t n,
                               Py_ssize_t m, floating *xc, floating *xn, floating *std,
                               floating *mean, floating *running_mean, floating *running_var,
                               unsigned char *mask, unsigned char *dmask, uint64_t key,
                               uint32_t threshold) noexcept nogil:
    """h = relu(batch norm of (h + b), then + beta) in place, mask = (. <= 0), then dropout
    (dmask not NULL); the passes of bias, bn_train, bias_relu and dropout_forward in three;
    see fastmlp_norm.h."""
    if floating is float:
        fastmlp_bn_relu_train_f(h, b, gamma, beta, eps, momentum, n, m, xc, xn, std, mean,
                                running_mean, running_var, mask, dmask, key, threshold)
    else:
        fastmlp_bn_relu_train_d(h, b, gamma, beta, eps, momentum, n, m, xc, xn, std, mean,
                                running_mean, running_var, mask, dmask, key, threshold)


cdef inline void bn_infer(const floating *x, const floating *gamma, const floating *beta,
                          const floating *running_mean, const floating *running_var,
                          double eps, Py_ssize_t n, Py_ssize_t m, floating *out,
                          floating *scratch) noexcept nogil:
    """Inference-mode batch normalisation with the running statistics."""
    if floating is float:
        fastmlp_bn_infer_f(x, gamma, beta, running_mean, running_var, eps, n, m, out, scratch)
    else:
        fastmlp_bn_infer_d(x, gamma, beta, running_mean, running_var, eps, n, m, out, scratch)


cdef inline void bn_backward(const floating *dout, const floating *xn, const floating *gamma,
                             const floating *std, Py_ssize_t n, Py_ssize_t m, floating *dx,
                             floating *dgamma, floating *dbeta, floating *work) noexcept nogil:
    """Backward of bn_train: dx (may be dout), dgamma, dbeta; work (3m) scratch."""
    if floating is float:
        fastmlp_bn_backward_f(dout, xn, gamma, std, n, m, dx, dgamma, dbeta, work)
    else:
        fastmlp_bn_backward_d(dout, xn, gamma, std, n, m, dx, dgamma, dbeta, work)


cdef inline void bn_relu_backward(floating *d, const unsigned char *dmask,
                                  const unsigned char *mask, const floating *xn,
                                  const floating *gamma, const floating *std, Py_ssize_t n,
                                  Py_ssize_t m, floating *dgamma, floating *dbeta, floating *db,
                                  floating *work) noexcept nogil:
    """Backward of bn_relu_train in place on d, with dgamma, dbeta and db (the column sums
    of the result); dropout_backward, relu_backward, bn_backward and column_sums in two
    passes; see fastmlp_norm.h."""
    if floating is float:
        fastmlp_bn_relu_backward_f(d, dmask, mask, xn, gamma, std, n, m, dgamma, dbeta, db,
                                   work)
    else:
        fastmlp_bn_relu_backward_d(d, dmask, mask, xn, gamma, std, n, m, dgamma, dbeta, db,
                                   work)
