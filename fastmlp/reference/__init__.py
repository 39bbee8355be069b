"""Pure-numpy reference implementation of fastmlp: the oracle the compiled path is tested against.

Same class and function names, signatures and attributes as ``fastmlp.layers``,
``fastmlp.functions`` and the networks, written for clarity. Imports only
numpy, ``fastmlp._validation``, ``fastmlp.gradient`` and ``fastmlp._networks``
(never compiled code), so it stays an independent check. The networks are in
``fastmlp.reference.networks``.
"""
from fastmlp.reference import functions, layers, networks, optimizers
from fastmlp.reference.functions import (
    cross_entropy_error,
    mean_squared_error,
    relu,
    sigmoid,
    softmax,
)
from fastmlp.reference.layers import (
    AddLayer,
    Affine,
    BatchNormalization,
    Dropout,
    IdentityWithLoss,
    MSELoss,
    MulLayer,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
)
from fastmlp.reference.networks import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from fastmlp.reference.optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = [
    "MulLayer",
    "AddLayer",
    "Relu",
    "Sigmoid",
    "Affine",
    "SoftmaxWithLoss",
    "MSELoss",
    "IdentityWithLoss",
    "Dropout",
    "BatchNormalization",
    "sigmoid",
    "relu",
    "softmax",
    "cross_entropy_error",
    "mean_squared_error",
    "TwoLayerNet",
    "MultiLayerNet",
    "MultiLayerNetExtend",
    "SGD",
    "Momentum",
    "Nesterov",
    "AdaGrad",
    "RMSprop",
    "Adam",
    "functions",
    "layers",
    "networks",
    "optimizers",
]

