"""What the MPI tests share: finding ``mpiexec`` (MPICH's wheel puts it beside python)."""
import os
import shutil
import sys
from pathlib import Path


def mpiexec():
    """The ``mpiexec`` next to this python (the mpi extra's), else the first on PATH."""
    found = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                          os.environ.get("PATH", "")]))
    assert found, "mpi4py is installed but no mpiexec was found (pip install mpich)"
    return found
