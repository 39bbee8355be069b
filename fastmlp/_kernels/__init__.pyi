"""The compiled kernels (Cython extensions, no stubs): every module is typed as Any."""
from typing import Any

def __getattr__(name: str) -> Any: ...
