"""The dict a network keeps its parameters in (pure Python, used by ``fastmlp._networks``).

Its own module so the network base stays short; no numpy, no compiled code,
so the reference networks can use it too.
"""

from typing import Any

__all__ = ["Params"]


class Params(dict):
    """A network's parameters: ``W1, b1, ..., W{L}, b{L}``.

    A plain dict whose entries are also handed to the layers: assigning
    ``net.params["W1"] = new`` makes ``net.layers["Affine1"].W`` that array too,
    so ``predict``, ``gradient`` and ``save`` all see one set of parameters
    (the book's layers hold the arrays by reference, which a rebinding of a
    dict entry would otherwise leave behind).
    """

    __slots__ = ("_network",)

    def __init__(self, network, entries=()):
        super().__init__(entries)
        self._network = network

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._network._hand_to_layer(key, value)

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other: Any) -> "Params":  # type: ignore[misc]  # dict.__or__ returns a dict, |= keeps the Params
        self.update(other)
        return self

    def __reduce__(self):
        return (Params, (self._network, dict(self)))
