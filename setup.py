"""Build the Cython kernels in kernels/ as fastmlp._kernels.<name>.

OpenMP is probed by compiling, linking and running a tiny program; without
it (FASTMLP_NO_OPENMP=1, or a compiler such as Apple clang without libomp)
the same sources build serial extensions and fastmlp warns once at run time.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = ["affine", "mlp", "activations", "softmax_ce", "mse", "elementwise", "optim", "threads",
           "reduce", "normalization"]
OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n > 0 && omp_get_max_threads() > 0);
    return 0;
}
"""


def openmp_flags(compiler):
    """(compile_args, link_args) that enable OpenMP, or ([], []) with a warning."""
    if os.environ.get("FASTMLP_NO_OPENMP") == "1":
        return [], []
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    flags = ["-fopenmp"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.c")
        src.write_text(OPENMP_PROBE)
        try:
            objs = compiler.compile([str(src)], output_dir=tmp, extra_postargs=flags)
            exe = str(Path(tmp, "probe"))
            compiler.link_executable(objs, exe, extra_postargs=flags)
            if subprocess.run([exe], capture_output=True, text=True, timeout=30).stdout.strip() == "1":
                return flags, flags
        except Exception as exc:  # any compiler or run failure means: no OpenMP
            print(f"OpenMP probe failed: {exc}", file=sys.stderr)
    print("WARNING: building fastmlp without OpenMP; kernels will run single-threaded.",
          file=sys.stderr)
    return [], []


class BuildExt(build_ext):
    def build_extensions(self):
        compile_args, link_args = openmp_flags(self.compiler)
        # -fno-math-errno lets sqrt vectorise; unlike -ffast-math it keeps NaN/inf semantics.
        # -ffp-contract=off: no fused multiply-adds, so the AVX2/AVX-512 clones of
        # fastmlp_simd.h round exactly as the baseline build (and as numpy) does.
        extra = (["-O3", "-fno-math-errno", "-ffp-contract=off"]
                 if self.compiler.compiler_type != "msvc" else ["/O2"])
        if os.environ.get("FASTMLP_NATIVE") == "1":
            extra.append("-march=native")
        sanitize = []
        if os.environ.get("FASTMLP_SANITIZE") == "1":
            # AddressSanitizer + UndefinedBehaviorSanitizer (.ci/sanitize): every report is
            # fatal; -O1 -g for usable stacks. Load with LD_PRELOAD=$(gcc -print-file-name=
            # libasan.so), since the python binary itself is not instrumented.
            if self.compiler.compiler_type == "msvc":
                sys.exit("FASTMLP_SANITIZE=1 needs GCC or clang")
            sanitize = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                        "-fno-sanitize-recover=all", "-g"]
            extra = [f for f in extra if f != "-O3"] + ["-O1"]
        for ext in self.extensions:
            ext.extra_compile_args = extra + sanitize + compile_args
            ext.extra_link_args = sanitize + link_args
        super().build_extensions()


debug = os.environ.get("FASTMLP_DEBUG_CYTHON") == "1"
extensions = [
    Extension(f"fastmlp._kernels.{name}", [f"kernels/{name}.pyx"],
              include_dirs=[np.get_include(), "kernels"],
              define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")])
    for name in KERNELS
]
ext_modules = cythonize(
    extensions, include_path=["kernels"],
    compiler_directives={"boundscheck": debug, "wraparound": False, "cdivision": True,
                         "initializedcheck": debug, "language_level": 3})
# Cython lists numpy's headers among each extension's dependencies by absolute path (in
# the build environment): they are not this project's files, so they stay out of the
# sdist's manifest (setuptools would warn about every one).
for ext in ext_modules:
    ext.depends = [dep for dep in ext.depends if not os.path.isabs(dep)]
setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
