"""Small datasets for training and testing fastmlp networks.

``load_digits`` returns the UCI 8x8 handwritten digits shipped inside the
package (no network needed); ``load_mnist`` reads the four MNIST IDX files
(or Fashion-MNIST, which uses the same format) from a directory.
"""
from ._digits import load_digits
from ._mnist import load_mnist

__all__ = ["load_digits", "load_mnist"]
