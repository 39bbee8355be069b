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
    identity_function,
    mean_squared_error,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    softmax,
    softmax_loss,
    step_function,
    sum_squared_error,
    tanh,
)
from fastmlp.reference.layers import (
    AddLayer,
    Affine,
    BatchNormalization,
    Dropout,
    Identity,
    IdentityWithLoss,
    MSELoss,
    MulLayer,
    PoissonLoss,
    Relu,
    Sigmoid,
    SigmoidWithLoss,
    SoftmaxWithLoss,
    Tanh,
)
from fastmlp.reference.networks import MultiLayerNet, MultiLayerNetExtend, TwoLayerNet
from fastmlp.reference.optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = [
    "MulLayer",
    "AddLayer",
    "Relu",
    "Sigmoid",
    "Tanh",
    "Identity",
    "Affine",
    "SoftmaxWithLoss",
    "MSELoss",
    "IdentityWithLoss",
    "SigmoidWithLoss",
    "PoissonLoss",
    "Dropout",
    "BatchNormalization",
    "sigmoid",
    "tanh",
    "relu",
    "softmax",
    "cross_entropy_error",
    "mean_squared_error",
    "identity_function",
    "step_function",
    "sigmoid_grad",
    "relu_grad",
    "sum_squared_error",
    "softmax_loss",
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

