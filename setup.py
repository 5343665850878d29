"""Builds native/ into loadgen/_native*.so: a plain shared library loaded with ctypes.

It exports only the lg_* functions of native/loadgen.h; it is not a CPython
extension module, so it is never imported, only found by loadgen/run/native.py.
"""
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

NATIVE = Path("native")


class BuildSharedLibrary(build_ext):
    """build_ext that does not expect a PyInit_ symbol."""

    def get_export_symbols(self, ext):
        return []


setup(
    ext_modules=[
        Extension(
            "loadgen._native",
            sources=sorted(str(p) for p in NATIVE.glob("*.c")),
            depends=sorted(str(p) for p in NATIVE.glob("*.h")),
            include_dirs=[str(NATIVE)],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden"],
            libraries=["pthread"],
        )
    ],
    cmdclass={"build_ext": BuildSharedLibrary},
)
