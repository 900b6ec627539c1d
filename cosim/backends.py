"""Registry of spiking backends: name -> (params model, adapter factory).

Imports are lazy so that the coordinator and the TVB image never import NEURON.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> "module:attr" of the params model and of the adapter class
_BACKENDS: dict[str, tuple[str, str]] = {
    "reference": ("services.reference_node.config:ReferenceParams", "services.reference_node.adapter:ReferenceAdapter"),
    "noop": ("services.noop_node.adapter:NullParams", "services.noop_node.adapter:NullSpiking"),
    "netpyne": ("services.netpyne_node.config:NetpyneParams", "services.netpyne_node.adapter:NetpyneAdapter"),
}


class UnknownBackend(ValueError):
    pass


def names() -> list[str]:
    return sorted(_BACKENDS)


def _load(ref: str) -> Any:
    mod, attr = ref.split(":")
    return getattr(importlib.import_module(mod), attr)


def _entry(name: str) -> tuple[str, str]:
    if name not in _BACKENDS:
        raise UnknownBackend(f"unknown backend {name!r}; choose one of {names()}")
    return _BACKENDS[name]


def params_model(name: str):
    return _load(_entry(name)[0])


def validate_params(name: str, params: dict) -> Any:
    return params_model(name).model_validate(params or {})


def adapter_class(name: str):
    return _load(_entry(name)[1])
