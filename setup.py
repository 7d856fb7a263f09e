"""Build l2fast's Cython kernels, with OpenMP when the compiler has it.

At build time a tiny OpenMP program is compiled and linked with the
compiler setuptools will use.  If that works the kernels are built with
OpenMP; if not, they are built serial and a warning says so.

Environment:
    L2FAST_OPENMP=0   build serial, do not probe
    L2FAST_OPENMP=1   OpenMP is required: a failed probe is a build error
"""

import os
import platform
import shlex
import sys
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PROBE = textwrap.dedent(
    """\
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d\\n", n > 0 && omp_get_max_threads() > 0);
        return 0;
    }
    """
)


def openmp_flags(compiler_type):
    """Compile and link flags that turn OpenMP on for this compiler."""
    if compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang: OpenMP comes from Homebrew's libomp (see pyproject's
        # [tool.cibuildwheel.macos]); CPPFLAGS/LDFLAGS point at it.
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def probe_openmp(compiler, cflags, ldflags):
    """True when `compiler` compiles and links a small OpenMP program."""
    extra_ld = shlex.split(os.environ.get("LDFLAGS", ""))
    extra_c = shlex.split(os.environ.get("CPPFLAGS", ""))
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe_openmp.c")
        with open(src, "w") as f:
            f.write(PROBE)
        try:
            objs = compiler.compile([src], output_dir=tmp, extra_postargs=cflags + extra_c)
            compiler.link_executable(objs, "probe_openmp", output_dir=tmp,
                                     extra_postargs=ldflags + extra_ld)
        except Exception:  # CompileError, LinkError, or a missing compiler
            return False
    return True


class BuildExt(build_ext):
    def build_extensions(self):
        ctype = self.compiler.compiler_type
        want = os.environ.get("L2FAST_OPENMP", "").strip()
        cflags, ldflags = openmp_flags(ctype)
        if want == "0":
            use_openmp = False
        else:
            use_openmp = probe_openmp(self.compiler, cflags, ldflags)
            if not use_openmp:
                msg = (f"l2fast: the compiler ({ctype}) cannot build OpenMP code; "
                       "the kernels are built serial (one thread)")
                if want == "1":
                    sys.exit(msg.replace("the kernels are built serial (one thread)",
                                         "L2FAST_OPENMP=1 requires OpenMP"))
                warnings.warn(msg)
        if ctype == "msvc":
            base = ["/O2"]
        else:
            # Portable flags only: no -march; what ships runs on any CPU of the arch.
            base = ["-O3", "-fno-math-errno", "-ffp-contract=off"]
        flags = base + (cflags if use_openmp else [])
        cc = " ".join(self.compiler.compiler_so if hasattr(self.compiler, "compiler_so") else [ctype])
        for ext in self.extensions:
            ext.extra_compile_args = flags + ext.extra_compile_args
            if use_openmp:
                ext.extra_link_args = ldflags + ext.extra_link_args
            ext.define_macros = ext.define_macros + [
                ("L2FAST_BUILD_OPENMP", "1" if use_openmp else "0"),
                ("L2FAST_BUILD_COMPILER", c_string(cc)),
                ("L2FAST_BUILD_CFLAGS", c_string(" ".join(flags))),
                ("L2FAST_BUILD_PLATFORM", c_string(f"{platform.system()}-{platform.machine()}")),
            ]
        super().build_extensions()


def c_string(s):
    """A C string literal for a -D macro, escaped for every compiler."""
    return '"' + s.replace("\\", "/").replace('"', "'") + '"'


def extension(name):
    return Extension(
        f"l2fast.{name}",
        [f"l2fast/{name}.pyx"],
        include_dirs=[np.get_include(), "l2fast"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    )


setup(
    ext_modules=cythonize(
        [extension("_table"), extension("_kernels")],
        compiler_directives={"language_level": 3},
    ),
    cmdclass={"build_ext": BuildExt},
)
