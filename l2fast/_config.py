"""show_config(): what l2fast was built with and what it runs on."""
from __future__ import annotations

import os
import platform
import sys
from typing import Any, Literal, overload

import numpy as np

from . import _kernels
from ._version import __version__


def _openmp_runtime(path: str | None) -> tuple[str | None, str | None]:
    """(path, version) of the OpenMP library, the version read off its file name."""
    if not path:
        return None, None
    real = os.path.realpath(path)
    base = os.path.basename(real)
    version = None
    if ".so." in base:
        version = base.split(".so.", 1)[1]
    elif "-" in base and base.endswith(".dylib"):
        version = base.rsplit("-", 1)[1][: -len(".dylib")]
    return real, version


def config() -> dict[str, Any]:
    """The configuration as a dict (what `show_config` prints)."""
    info = _kernels.build_info()
    path, version = _openmp_runtime(info["openmp_library"])
    return {
        "l2fast": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "build": {
            "compiler": info["compiler"],
            "cflags": info["cflags"],
            "target": info["platform"],
            "openmp": info["openmp"],
            "openmp_spec": info["openmp_spec"] or None,
        },
        "openmp_runtime": {
            "library": path,
            "version": version,
            "max_threads": _kernels.max_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        },
        "simd": {
            "baseline": info["simd_baseline"],
            "dispatched": info["simd_dispatch"],
            "loops16": info["simd_loops16"],
        },
        "kernels": {
            "chunk_elements": info["chunk"],
            "float64_lanes": info["lanes"],
            "parallel_min_size": info["parallel_min_size"],
        },
    }


@overload
def show_config(mode: Literal["stdout"] = ...) -> None: ...
@overload
def show_config(mode: Literal["dicts"]) -> dict[str, Any]: ...
@overload
def show_config(mode: str) -> dict[str, Any] | None: ...
def show_config(mode: str = "stdout") -> dict[str, Any] | None:
    """Print (or return, with ``mode="dicts"``) l2fast's build and runtime configuration.

    Reports the l2fast, Python and NumPy versions, the compiler and flags the
    kernels were built with, whether OpenMP is on and which runtime library
    is actually loaded (path and version), the default thread count, and the
    SIMD level of the loops this CPU runs.
    """
    cfg = config()
    if mode == "dicts":
        return cfg
    if mode != "stdout":
        raise ValueError(f"mode must be 'stdout' or 'dicts', got {mode!r}")
    for key, value in cfg.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
