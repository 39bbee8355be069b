"""fastmlp: the textbook's MLP layers on compiled, BLAS-backed CPU kernels.

The layer classes keep the interface of "Deep Learning from Scratch"
(``common/layers.py``); their hot loops run in Cython kernels and their
matrix products in the BLAS numpy itself uses. ``fastmlp.reference`` holds
the same API in plain numpy, the oracle the tests compare against.
"""
from __future__ import annotations

import logging as _logging
from typing import TYPE_CHECKING, Any

from . import datasets, functions, layers, optimizers, util
from ._loop import DivergenceError
from ._oversubscription import OversubscriptionWarning
from ._version import __version__
from .interop import export_onnx, from_torch_state_dict
from .io import load, save
from .networks import MultiLayerNet, TwoLayerNet
from .networks_extend import MultiLayerNetExtend
from .threads import get_num_threads, set_num_threads, threadpool_limits
from .trainer import Trainer

# Library diagnostics go to the "fastmlp" logger; shown only where the application
# configures logging (e.g. logging.basicConfig(level=logging.DEBUG)).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

if TYPE_CHECKING:   # imported on first use at run time (__getattr__); typed for checkers
    from . import reference as reference
    from .estimator import MLPClassifier, MLPRegressor


def __getattr__(name: str) -> Any:
    """The estimators need scikit-learn, so they are imported on first use; the numpy
    reference (``fastmlp.reference``) is imported on first use too, off the import path."""
    if name in ("MLPClassifier", "MLPRegressor"):
        from . import estimator
        return getattr(estimator, name)
    if name == "reference":
        import importlib
        return importlib.import_module(".reference", __name__)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")


def show_config() -> None:
    """Print how fastmlp was built and which BLAS it multiplies with."""
    from . import _blas, threads
    print(f"fastmlp {__version__}")
    print(f"  OpenMP kernels: {'yes' if threads.openmp_enabled() else 'no (single-threaded)'}")
    print(f"  threads: {threads.get_num_threads()}")
    route = "numpy's BLAS via GEMM pointers" if _blas.USE_BLAS else "np.matmul fallback"
    print(f"  matrix products: {route} ({_blas.numpy_blas_path()})")


__all__ = ["layers", "functions", "optimizers", "datasets", "util", "MultiLayerNet",
           "MultiLayerNetExtend", "TwoLayerNet", "Trainer", "DivergenceError", "save", "load",
           "export_onnx", "from_torch_state_dict", "MLPClassifier", "MLPRegressor",
           "get_num_threads", "set_num_threads", "threadpool_limits", "OversubscriptionWarning",
           "show_config"]
