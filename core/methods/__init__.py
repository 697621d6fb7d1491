"""Training methods, one class per method, one file each (:class:`core.methods.base.Method`).

:data:`METHODS` maps each method's key (what ``TrainConfig.method`` stores) to its class, in the order the app
lists them. Adding a method is one new file here defining a ``Method`` subclass with a ``key``: every module
of this package is imported below, and defining the class registers it.

>>> METHODS["simclr"].uses_temperature, METHODS["supcon"].needs_labels, METHODS["vicreg"].uses_negatives
(True, True, False)
"""
from __future__ import annotations

import importlib
import pkgutil

from core.methods.base import _REGISTRY, Method, TwoViewMethod

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

METHODS: dict[str, type[Method]] = dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))


def method_for(key: str) -> Method:
    """A fresh instance of the method called ``key``; ValueError naming the choices for anything else."""
    cls = METHODS.get(key) if isinstance(key, str) else None
    if cls is None:
        raise ValueError(f"Unknown method {key!r}; choose one of {', '.join(METHODS)}.")
    return cls()


__all__ = ["METHODS", "Method", "TwoViewMethod", "method_for"]
