# The vectorised elementwise passes of fastmlp_simd.h, fused over float/double.
from cython cimport floating

cdef extern from "fastmlp_simd.h" nogil:
    void fastmlp_bias_relu_f(float *h, const float *b, unsigned char *mask, Py_ssize_t n, Py_ssize_t m)
    void fastmlp_bias_relu_d(double *h, const double *b, unsigned char *mask, Py_ssize_t n, Py_ssize_t m)
    void fastmlp_bias_f(float *h, const float *b, Py_ssize_t n, Py_ssize_t m)
    void fastmlp_bias_d(double *h, const double *b, Py_ssize_t n, Py_ssize_t m)
    void fastmlp_relu_f(const float *x, float *out, unsigned char *mask, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_relu_d(const double *x, double *out, unsigned char *mask, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_relu_backward_f(const float *dout, const unsigned char *mask, float *dx,
                                 Py_ssize_t start, Py_ssize_t end)
    void fastmlp_relu_backward_d(const double *dout, const unsigned char *mask, double *dx,
                                 Py_ssize_t start, Py_ssize_t end)
    void fastmlp_column_sums_f(const float *a, Py_ssize_t lda, float *sums, Py_ssize_t n, Py_ssize_t m)
    void fastmlp_column_sums_d(const double *a, Py_ssize_t lda, double *sums, Py_ssize_t n, Py_ssize_t m)


cdef inline void bias_relu(floating *h, const floating *b, unsigned char *mask,
                           Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """h = relu(h + b) per row of (n, m); mask = (h + b <= 0) unless mask is NULL."""
    if floating is float:
        fastmlp_bias_relu_f(h, b, mask, n, m)
    else:
        fastmlp_bias_relu_d(h, b, mask, n, m)


cdef inline void bias(floating *h, const floating *b, Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """h += b per row of (n, m)."""
    if floating is float:
        fastmlp_bias_f(h, b, n, m)
    else:
        fastmlp_bias_d(h, b, n, m)


cdef inline void relu(const floating *x, floating *out, unsigned char *mask,
                      Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """out = relu(x), mask = (x <= 0) over [start, end)."""
    if floating is float:
        fastmlp_relu_f(x, out, mask, start, end)
    else:
        fastmlp_relu_d(x, out, mask, start, end)


cdef inline void relu_backward(const floating *dout, const unsigned char *mask, floating *dx,
                               Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """dx = 0 where mask else dout over [start, end); dx may be dout."""
    if floating is float:
        fastmlp_relu_backward_f(dout, mask, dx, start, end)
    else:
        fastmlp_relu_backward_d(dout, mask, dx, start, end)


cdef inline void column_sums(const floating *a, Py_ssize_t lda, floating *sums,
                             Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    """sums[j] = sum_i a[i * lda + j] for j < m, rows added in order."""
    if floating is float:
        fastmlp_column_sums_f(a, lda, sums, n, m)
    else:
        fastmlp_column_sums_d(a, lda, sums, n, m)


# The exp-based passes of fastmlp_exp.h (a vectorised exp: no libm call per element).
cdef extern from "fastmlp_exp.h" nogil:
    void fastmlp_exp_f(const float *x, float shift, float *out, Py_ssize_t n)
    void fastmlp_exp_d(const double *x, double shift, double *out, Py_ssize_t n)
    void fastmlp_sigmoid_f(const float *x, float *out, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_sigmoid_d(const double *x, double *out, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_tanh_f(const float *x, float *out, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_tanh_d(const double *x, double *out, Py_ssize_t start, Py_ssize_t end)
    void fastmlp_sigmoid_backward_f(const float *dout, const float *out, float *dx,
                                    Py_ssize_t start, Py_ssize_t end)
    void fastmlp_sigmoid_backward_d(const double *dout, const double *out, double *dx,
                                    Py_ssize_t start, Py_ssize_t end)
    void fastmlp_tanh_backward_f(const float *dout, const float *out, float *dx,
                                 Py_ssize_t start, Py_ssize_t end)
    void fastmlp_tanh_backward_d(const double *dout, const double *out, double *dx,
                                 Py_ssize_t start, Py_ssize_t end)
    void fastmlp_bias_sigmoid_f(float *h, const float *b, Py_ssize_t n, Py_ssize_t m)
    void fastmlp_bias_sigmoid_d(double *h, const double *b, Py_ssize_t n, Py_ssize_t m)
    void fastmlp_bias_tanh_f(float *h, const float *b, Py_ssize_t n, Py_ssize_t m)
    void fastmlp_bias_tanh_d(double *h, const double *b, Py_ssize_t n, Py_ssize_t m)


cdef inline void exp_shifted(const floating *x, floating shift, floating *out,
                             Py_ssize_t n) noexcept nogil:
    """out[i] = exp(x[i] - shift) for i < n; out may be x."""
    if floating is float:
        fastmlp_exp_f(x, shift, out, n)
    else:
        fastmlp_exp_d(x, shift, out, n)


cdef inline void sigmoid(const floating *x, floating *out, Py_ssize_t start,
                         Py_ssize_t end) noexcept nogil:
    """out = 1 / (1 + exp(-x)) over [start, end), without overflow."""
    if floating is float:
        fastmlp_sigmoid_f(x, out, start, end)
    else:
        fastmlp_sigmoid_d(x, out, start, end)


cdef inline void tanh(const floating *x, floating *out, Py_ssize_t start,
                      Py_ssize_t end) noexcept nogil:
    """out = tanh(x) over [start, end)."""
    if floating is float:
        fastmlp_tanh_f(x, out, start, end)
    else:
        fastmlp_tanh_d(x, out, start, end)


cdef inline void sigmoid_backward(const floating *dout, const floating *out, floating *dx,
                                  Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """dx = dout * (1 - out) * out over [start, end); dx may be dout."""
    if floating is float:
        fastmlp_sigmoid_backward_f(dout, out, dx, start, end)
    else:
        fastmlp_sigmoid_backward_d(dout, out, dx, start, end)


cdef inline void tanh_backward(const floating *dout, const floating *out, floating *dx,
                               Py_ssize_t start, Py_ssize_t end) noexcept nogil:
    """dx = dout * ((1 - out) * (1 + out)) over [start, end); dx may be dout."""
    if floating is float:
        fastmlp_tanh_backward_f(dout, out, dx, start, end)
    else:
        fastmlp_tanh_backward_d(dout, out, dx, start, end)


cdef inline void bias_sigmoid(floating *h, const floating *b, Py_ssize_t n,
                              Py_ssize_t m) noexcept nogil:
    """h = sigmoid(h + b) per row of (n, m)."""
    if floating is float:
        fastmlp_bias_sigmoid_f(h, b, n, m)
    else:
        fastmlp_bias_sigmoid_d(h, b, n, m)


cdef inline void bias_tanh(floating *h, const floating *b, Py_ssize_t n,
                           Py_ssize_t m) noexcept nogil:
    """h = tanh(h + b) per row of (n, m)."""
    if floating is float:
        fastmlp_bias_tanh_f(h, b, n, m)
    else:
        fastmlp_bias_tanh_d(h, b, n, m)
