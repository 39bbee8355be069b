"""The book's networks on the pure-numpy reference layers (the oracle's networks).

The logic is ``fastmlp._networks``'s, shared with the compiled networks;
only the layers module differs, so comparing the two tests the compiled
layers and the fused path, not a second copy of the network code.
"""
from fastmlp import _networks, _networks_extend
from fastmlp.reference import layers

__all__ = ["MultiLayerNet", "TwoLayerNet", "MultiLayerNetExtend"]

_NOTE = "\n    Built on ``fastmlp.reference.layers`` (pure numpy).\n"


class MultiLayerNet(_networks.MultiLayerNet):
    __doc__ = (_networks.MultiLayerNet.__doc__ or "") + _NOTE
    layers_module = layers


class TwoLayerNet(_networks.TwoLayerNet, MultiLayerNet):
    # the book's two-layer constructor (_networks.TwoLayerNet) over the MultiLayerNet above
    __doc__ = (_networks.TwoLayerNet.__doc__ or "") + _NOTE


class MultiLayerNetExtend(_networks_extend.MultiLayerNetExtend):
    __doc__ = (_networks_extend.MultiLayerNetExtend.__doc__ or "") + _NOTE
    layers_module = layers
