"""Types of l2fast's arguments, for annotations only (no runtime module).

l2fast's own modules import these under ``typing.TYPE_CHECKING``.
"""
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer, TypeAlias

from ._api import ParamList

class DLPackArray(Protocol):
    """A torch tensor, a JAX array or any other object exporting its memory by DLPack."""
    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __dlpack_device__(self) -> Any: ...

FloatArray: TypeAlias = npt.NDArray[np.float32] | npt.NDArray[np.float64]
# One weight array: a float32/float64 ndarray, a CPU tensor, or another view of memory.
Array: TypeAlias = FloatArray | DLPackArray | Buffer
# What every call takes: one array, any iterable of arrays (a list, a generator such
# as torch's model.parameters()), a dict of named arrays, or a ParamList.
Arrays: TypeAlias = Array | Iterable[Array] | Mapping[str, Array] | ParamList
# A view l2fast holds: the array itself, or the NumPy view of a tensor or buffer.
View: TypeAlias = npt.NDArray[np.floating[Any]]
Threads: TypeAlias = int | np.integer[Any] | None
Real: TypeAlias = float | np.floating[Any] | np.integer[Any]
Sums: TypeAlias = npt.NDArray[np.float64]
# comm=: an mpi4py.MPI.Comm, a torch.distributed ProcessGroup, "mpi", "torch" or None
# (docs/distributed.md); neither package is a dependency, so it is not narrowed here.
Comm: TypeAlias = Any
