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
from core.settings_schema import METHOD_NAMES

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

METHODS: dict[str, type[Method]] = dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))

# The app's start path lists the methods without importing torch (core.settings_schema.METHOD_NAMES); the
# classes here must be exactly those, in that order, with those names.
if {k: m.name for k, m in METHODS.items()} != METHOD_NAMES or list(METHODS) != list(METHOD_NAMES):
    raise RuntimeError("core.methods and core.settings_schema.METHOD_NAMES list different training methods; "
                       "add or rename the method in both (key, display name, order).")


def method_for(key: str) -> Method:
    """A fresh instance of the method called ``key``; ValueError naming the choices for anything else."""
    cls = METHODS.get(key) if isinstance(key, str) else None
    if cls is None:
        raise ValueError(f"Unknown method {key!r}; choose one of {', '.join(METHODS)}.")
    return cls()


__all__ = ["METHODS", "Method", "TwoViewMethod", "method_for"]
