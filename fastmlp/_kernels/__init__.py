"""The compiled kernels (``fastmlp._kernels.<name>``), built from ``kernels/*.pyx``.

Only ``fastmlp._backend`` (and ``fastmlp.threads``) import them. In a source
tree that was never built this directory holds no compiled modules; the import
then stops here with a message saying how to build, rather than with a bare
"cannot import name" from deep inside fastmlp.
"""
import importlib.machinery
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)

if not any(name.endswith(_SUFFIXES) for name in os.listdir(_HERE)):
    _PACKAGE = os.path.dirname(_HERE)
    raise ImportError(
        f"fastmlp was imported from {_PACKAGE}, a source tree whose compiled extensions are "
        f"not built ({os.path.join(_PACKAGE, '_kernels')} holds no compiled modules). Either "
        f"run Python from another directory to use the installed fastmlp, or build in place: "
        f"`python setup.py build_ext --inplace` (or `pip install -e .`) in "
        f"{os.path.dirname(_PACKAGE)}.",
        name="fastmlp._kernels", path=__file__)
