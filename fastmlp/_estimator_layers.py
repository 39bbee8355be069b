"""``coefs_`` and ``intercepts_`` of fastmlp's estimators, as scikit-learn users know them:
lists of arrays that can be edited in place, assigned item by item (``est.coefs_[0] = W``)
or assigned whole (``est.coefs_ = [...]``). The arrays are views of the network's own
parameters, so an assignment copies the new values into the network (after checking every
one of them): ``predict`` and a later warm-started ``fit`` or ``partial_fit`` use them. The
number of layers and their shapes are fixed by the fitted network."""
import operator

import numpy as np


def checked_layer(net, kind, index, value, name):
    """``value`` as a new array of the network's dtype, fit to replace parameter
    ``{kind}{index + 1}`` of ``net`` (TypeError/ValueError naming ``name`` otherwise)."""
    target = net.params[f"{kind}{index + 1}"]
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers: {exc}") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {array.dtype}")
    if array.shape != target.shape:
        raise ValueError(f"{name} must have shape {target.shape} (the network's layer "
                         f"{index + 1}), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return np.array(array, dtype=target.dtype)   # a copy: the source may be a parameter too


class LayerList(list):
    """``coefs_`` (``kind`` 'W') or ``intercepts_`` (``kind`` 'b') of a fitted estimator:
    views of its network's parameters; assigning an item copies into the network. Its
    length is fixed; a copy or a pickle of it is a plain list."""

    def __init__(self, net, kind, attribute):
        self._net, self._kind, self._attribute = net, kind, attribute
        super().__init__(net.params[f"{kind}{i}"] for i in range(1, net.hidden_layer_num + 2))

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            indices = range(len(self))[index]
            values = list(value)
            if len(values) != len(indices):
                raise ValueError(f"{self._attribute}[{index.start}:{index.stop}] takes "
                                 f"{len(indices)} arrays (the number of layers is fixed), "
                                 f"got {len(values)}")
        else:
            position = operator.index(index)
            if not -len(self) <= position < len(self):
                raise IndexError(f"{self._attribute} index {position} out of range "
                                 f"({len(self)} layers)")
            indices, values = [position % len(self)], [value]
        arrays = [checked_layer(self._net, self._kind, i, v, f"{self._attribute}[{i}]")
                  for i, v in zip(indices, values)]
        for i, array in zip(indices, arrays):
            np.copyto(self._net.params[f"{self._kind}{i + 1}"], array)

    def __reduce__(self):
        return list, (list(self),)

    def _fixed_length(self, *args, **kwargs):
        raise TypeError(f"{self._attribute} has one array per layer: its length is fixed by "
                        f"hidden_layer_sizes (assign its items instead)")

    append = extend = insert = pop = remove = clear = __delitem__ = _fixed_length
    __iadd__ = __imul__ = sort = reverse = _fixed_length


def layer_attribute(kind, attribute, doc):
    """The ``coefs_``/``intercepts_`` property of the estimators."""

    def get(est):
        net = est.__dict__.get("_net")
        if net is None:
            raise AttributeError(f"{attribute} exists after fit")
        return LayerList(net, kind, attribute)

    def set_(est, value):
        net = est.__dict__.get("_net")
        if net is None:
            raise AttributeError(f"{attribute} can only be assigned on a fitted estimator "
                                 f"(it replaces the values of the network's layers)")
        n_layers = net.hidden_layer_num + 1
        if isinstance(value, (str, bytes, np.ndarray)) or not hasattr(value, "__len__"):
            raise TypeError(f"{attribute} must be a list of {n_layers} arrays, got "
                            f"{type(value).__name__}")
        if len(value) != n_layers:
            raise ValueError(f"{attribute} must hold {n_layers} arrays (one per layer), got "
                             f"{len(value)}")
        LayerList(net, kind, attribute)[:] = list(value)

    return property(get, set_, doc=doc)
