"""Parameter shapes of real networks, shipped as JSON: what tests and benchmarks fill.

Each file ``<name>.json`` holds ``{"name": ..., "source": ..., "params":
[{"name": ..., "shape": [...], "kind": ...}, ...]}``, the parameters in the
order ``model.parameters()`` lists them.  A development checkout may keep
fresher copies in ``../shared/models`` beside the repository; those are
read first.
"""
import json
from pathlib import Path

__all__ = ["names", "shapes", "path"]

#: The copies shipped as package data.
SHIPPED = Path(__file__).resolve().parent
#: Copies beside the repository (a development checkout), read first.
SHARED = SHIPPED.parents[2] / "shared" / "models"


def names():
    """Names of the shipped models, e.g. ``["bert-base-uncased", "gpt2", "resnet50"]``."""
    return sorted(p.stem for p in SHIPPED.glob("*.json"))


def path(name):
    """The JSON file of model `name`: the shared copy when present, else the shipped one.

    Raises
    ------
    ValueError
        `name` is not one of `names()`.
    """
    if name not in names():
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(names())}")
    shared = SHARED / f"{name}.json"
    return shared if shared.is_file() else SHIPPED / f"{name}.json"


def shapes(name):
    """[(parameter name, shape tuple)] of model `name`, in model order.

    Examples
    --------
    >>> from l2fast import models
    >>> models.shapes("resnet50")[0]
    ('embedder.embedder.convolution.weight', (64, 3, 7, 7))
    """
    with open(path(name)) as f:
        spec = json.load(f)
    return [(p["name"], tuple(p["shape"])) for p in spec["params"]]
