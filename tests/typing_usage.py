"""fastmlp's public API used as a user's typed script would: type-checked, never run.

tests/test_typing.py runs ``mypy --strict`` on this file (pytest does not collect it:
its name does not match ``test_*.py``). ``--strict`` includes ``--disallow-untyped-calls``,
so calling any public function or method that has no annotations fails the check, and
each ``assert_type`` fails if a return type is missing (Any) or changes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from typing_extensions import assert_type

import fastmlp
from fastmlp import functions, layers, optimizers, util
from fastmlp.datasets import load_digits

FloatArray = npt.NDArray[np.floating[Any]]


def networks_and_layers() -> None:
    (x_train, t_train), (x_test, t_test) = load_digits()
    net = fastmlp.MultiLayerNet(64, [32, 16], 10, activation="relu", weight_decay_lambda=1e-4,
                                dtype=np.float32, seed=0)
    assert_type(net.predict(x_test), FloatArray)
    assert_type(net.loss(x_train, t_train), float)
    assert_type(net.accuracy(x_test, [int(t) for t in t_test]), float)
    grads = net.gradient(x_train[:10], t_train[:10], weight_decay=0.0)
    assert_type(grads, dict[str, FloatArray])
    assert_type(net.numerical_gradient(x_train[:2], t_train[:2], h=1e-2), dict[str, FloatArray])
    optimizer = optimizers.Adam(lr=0.01)
    optimizer.update(net.params, grads)
    assert_type(net.train_step(x_train[:10], t_train[:10], optimizers.SGD(0.1)), float)
    assert_type(net.config(), dict[str, Any])
    copy = fastmlp.MultiLayerNet.from_config(net.config(), net.params)
    assert_type(copy, fastmlp.MultiLayerNet)

    two = fastmlp.TwoLayerNet(64, 50, 10, seed=np.random.default_rng(1))
    assert_type(two.predict(x_test), FloatArray)
    extend = fastmlp.MultiLayerNetExtend(64, (32,), 10, use_dropout=True, dropout_ration=0.2,
                                         use_batchnorm=True)
    assert_type(extend.predict(x_test, train_flg=False), FloatArray)

    affine = layers.Affine(np.zeros((3, 2)), np.zeros(2))
    relu, softmax = layers.Relu(), layers.SoftmaxWithLoss()
    h = relu.forward(affine.forward([[1.0, 2.0, 3.0]]))
    assert_type(softmax.forward(h, [1]), float)
    dropout = layers.Dropout(0.5, rng=0)
    assert_type(dropout.forward(h, train_flg=True), FloatArray)
    assert_type(functions.softmax(h), np.ndarray)
    x, t = util.shuffle_dataset(x_train, t_train, seed=3)
    assert_type(x, np.ndarray)


def training_and_files(directory: Path) -> None:
    (x_train, t_train), (x_test, t_test) = load_digits(normalize=True, one_hot_label=False)
    net = fastmlp.MultiLayerNet(64, [32], 10)
    trainer = fastmlp.Trainer(net, x_train, t_train, x_test, t_test, epochs=2,
                              mini_batch_size=64, optimizer="Adam",
                              optimizer_param={"lr": 0.01}, verbose=False, seed=0)
    assert_type(trainer.train(), float)
    assert_type(trainer.train_loss_list, list[float])
    trainer2 = fastmlp.Trainer(net, x_train, t_train, x_test, t_test,
                               optimizer=optimizers.Momentum(lr=0.01, momentum=0.9))
    assert_type(trainer2.train_step(), float)

    path = directory / "net.fastmlp"
    fastmlp.save(net, path, optimizer=optimizers.Adam())
    fastmlp.save(net, str(path))
    model = fastmlp.load(path)
    model_and_optimizer = fastmlp.load(path, with_optimizer=True)
    assert_type(model_and_optimizer, tuple[Any, Any])
    print(model)

    with fastmlp.threadpool_limits(1):
        fastmlp.set_num_threads(2)
    fastmlp.set_num_threads(None)
    assert_type(fastmlp.get_num_threads(), int)
    fastmlp.show_config()


def estimators() -> None:
    (x_train, t_train), (x_test, t_test) = load_digits()
    clf = fastmlp.MLPClassifier(hidden_layer_sizes=(32,), max_iter=5, random_state=0,
                                dtype=np.float32)
    assert_type(clf.fit(x_train, t_train), fastmlp.MLPClassifier)
    assert_type(clf.predict(x_test), np.ndarray)
    assert_type(clf.predict_proba(x_test), FloatArray)
    print(clf.score(x_test, t_test))
    reg = fastmlp.MLPRegressor(hidden_layer_sizes=16, solver="sgd", max_iter=3)
    reg.fit(x_train, x_train[:, 0], sample_weight=np.ones(len(x_train)))
    assert_type(reg.predict(x_test), FloatArray)


def interop(directory: Path) -> None:
    net = fastmlp.from_torch_state_dict({"0.weight": np.zeros((4, 3)), "0.bias": np.zeros(4)},
                                        activation="tanh", dtype=np.float64)
    assert_type(net, fastmlp.MultiLayerNet)
    fastmlp.export_onnx(net, directory / "net.onnx")
