"""The build of lstmjax's one compiled part: the fused CPU kernels of `lj.Fused`.

Everything else about the package is declared in pyproject.toml. The extension
is optional: where no C++17 compiler is found, or its build fails, setuptools
says so and the install goes on without it, and `lj.Fused` runs its fallback
scan with a warning saying why. It needs no JAX and no BLAS to build: the
header-only XLA FFI API is vendored in csrc/xla/ (Apache-2.0, from jaxlib),
and the matrix products are the kernel's own. It is built for the baseline
of the CPU family; on x86-64 the AVX2 and AVX-512 paths are compiled beside
the baseline one and chosen at run time. No fast-math: NaN and infinities
behave as in the scan.
"""

from setuptools import Extension, setup

FLAGS = [
    "-std=c++17",
    "-O3",
    "-g0",  # no debug information: a small library
    "-ffp-contract=fast",  # fused multiply-adds in the matrix kernel (not fast-math)
    "-fopenmp-simd",  # `#pragma omp simd` on the gate loops only; no OpenMP runtime
    "-Wno-psabi",
]

setup(
    ext_modules=[
        Extension(
            "lstmjax._fused_cpu",
            sources=["csrc/fused_rnn.cc"],
            include_dirs=["csrc"],
            language="c++",
            extra_compile_args=FLAGS,
            optional=True,
        )
    ]
)
