"""The machine a benchmark runs on: CPU, numpy's BLAS, versions, and other processes' load.

``machine_info()`` is the record printed in the header and kept in the JSON;
``CpuShare`` and ``wait_idle`` measure (and wait out) the CPU other processes
take, which on a few-core machine distorts BLAS timings far more than its share.
"""
import os
import platform
import time

import numpy as np

from ..threads import available_cores  # the cores this process may run on (its affinity)

__all__ = ["CpuShare", "available_cores", "machine_info", "numpy_blas_info", "peer_versions",
           "wait_idle"]


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas_info():
    """threadpoolctl's record of the BLAS numpy uses (the one fastmlp multiplies with), or {}."""
    from threadpoolctl import threadpool_info

    from .. import _blas
    path = _blas.numpy_blas_path()
    numpy_dir = os.path.dirname(os.path.dirname(np.__file__))
    blas = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    for d in blas:
        if path is not None and os.path.realpath(d["filepath"]) == os.path.realpath(path):
            return d
    for d in blas:
        if d["filepath"].startswith(os.path.join(numpy_dir, "numpy")):
            return d
    return blas[0] if blas else {}


def machine_info():
    """CPU, cores, versions, numpy's BLAS, fastmlp's GEMM route and threads, load, env overrides."""
    from .. import _blas, threads
    from .._version import __version__
    blas = numpy_blas_info()
    cores = available_cores()
    info = {
        "cpu": _cpu_model(), "cores": cores, "logical_cpus": os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "fastmlp": __version__,
        "blas": {k: blas.get(k) for k in ("internal_api", "version", "architecture",
                                           "threading_layer", "num_threads", "filepath")},
        "fastmlp_gemm": "numpy's BLAS (GEMM pointers)" if _blas.USE_BLAS else "np.matmul fallback",
        "fastmlp_threads": threads.get_num_threads(),
        "openmp": threads.openmp_enabled(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                               "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                               "OMP_WAIT_POLICY") if k in os.environ},
    }
    return info


def peer_versions(names):
    """{peer: version or None, peer_error: why} for the optional peers among ``names``."""
    versions = {}
    for name, module in (("torch", "torch"), ("sklearn", "sklearn"),
                         ("onnxruntime", "onnxruntime")):
        if name in names:
            try:
                versions[name] = __import__(module).__version__
            except Exception as exc:  # noqa: BLE001 - any import failure means "unavailable"
                versions[name] = None
                versions[name + "_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return versions


class CpuShare:
    """CPU used by *other* processes while a block runs, as a share of all cores (Linux only).

    On a shared machine this says how much the figures can be trusted: a BLAS
    pool that waits for a descheduled thread slows by far more than its share.
    """

    def __init__(self):
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields[:3]) + sum(fields[5:8])   # user nice system, irq softirq steal
        t = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system, time.monotonic()

    def others(self, cores):
        """Share of ``cores`` used by other processes since construction, or None."""
        end = self._sample()
        if self.start is None or end is None or not cores:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start))
        return max(0.0, (busy - own) / (wall * cores)) if wall > 0 else None


def wait_idle(threshold, max_wait, window=0.5):
    """Wait until other processes use less than ``threshold`` of the cores over ``window``
    seconds, for at most ``max_wait`` seconds; return the last share seen (None if unknown)."""
    deadline = time.monotonic() + max_wait
    while True:
        probe = CpuShare()
        time.sleep(window)
        share = probe.others(available_cores())
        if share is None or share < threshold or time.monotonic() >= deadline:
            return share
