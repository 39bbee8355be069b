"""The tanh and identity activation layers in pure numpy: the oracle for ``fastmlp.layers``.

Kept beside ``fastmlp.reference.layers`` (which re-exports them) with the
same conventions: the book's ``forward``/``backward`` interface, attributes
set to ``None`` until the first ``forward``, arguments validated before any
state changes, no write into an array given.
"""
import numpy as np

from fastmlp._describe import layer_repr
from fastmlp._validation import as_float, check_called
from fastmlp.reference.functions import tanh

__all__ = ["Tanh", "Identity"]


def _check_dout(dout, shape, dtype):
    """``dout`` as an array of ``dtype`` with exactly ``shape`` (the forward output's)."""
    dout = as_float(dout, "dout", dtype=dtype)
    if dout.shape != shape:
        raise ValueError(f"dout must have the shape of the forward output {shape}, got {dout.shape}")
    return dout


class Tanh:
    """Hyperbolic tangent, elementwise on an array of any shape.

    Attributes
    ----------
    out : ndarray or None
        The last forward output; ``backward`` uses ``1 - out**2``.
    """

    __repr__ = layer_repr

    def __init__(self):
        self.out = None

    def forward(self, x):
        """Return ``tanh(x)``.

        Parameters
        ----------
        x : array_like, any shape

        Returns
        -------
        ndarray, same shape as ``x``
        """
        x = as_float(x, "x")
        self.out = np.asarray(tanh(x))
        return self.out

    def backward(self, dout):
        """Return ``dout * (1 - out**2)``, computed as ``dout * ((1 - out) * (1 + out))``.

        Parameters
        ----------
        dout : array_like, same shape as the forward output

        Returns
        -------
        dx : ndarray
        """
        check_called(self.out, "Tanh")
        dout = _check_dout(dout, self.out.shape, self.out.dtype)
        return dout * ((1 - self.out) * (1 + self.out))


class Identity:
    """The identity activation: ``forward(x) = x``, ``backward(dout) = dout`` (new arrays).

    Attributes
    ----------
    shape : tuple or None
        Shape of the last forward output.
    dtype : numpy dtype type or None
        Dtype of the last forward output.
    """

    __repr__ = layer_repr

    def __init__(self):
        self.shape = None
        self.dtype = None

    def forward(self, x):
        """Return a copy of ``x`` (as float).

        Parameters
        ----------
        x : array_like, any shape

        Returns
        -------
        ndarray, same shape as ``x``
        """
        x = as_float(x, "x")
        self.shape = x.shape
        self.dtype = x.dtype.type
        return x.copy()

    def backward(self, dout):
        """Return a copy of ``dout``.

        Parameters
        ----------
        dout : array_like, same shape as the forward output

        Returns
        -------
        dx : ndarray
        """
        check_called(self.shape, "Identity")
        return _check_dout(dout, self.shape, self.dtype).copy()
