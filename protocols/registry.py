"""Protections registered by name, imported lazily.

A protection name (``plaintext``, ``ckks``, ``secagg+dp`` ...) maps to a factory that takes keyword options and
returns a validated :class:`~protocols.base.AggregationProtocol`. Imports are lazy so that the core installs and
imports without optional dependencies (TenSEAL, or phe, which is GPL-3.0) and fails with a clear
:class:`~protocols.errors.ConfigError` naming the extra to install when one is missing.

Threat model: none; see the protocol modules.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from .base import AggregationProtocol
from .errors import ConfigError

__all__ = ["register", "create", "names", "protocol_class"]

Factory = Callable[..., AggregationProtocol]

# name -> "module:attribute" (the attribute is a factory: a class or a function taking keyword options)
_BUILTIN: dict[str, str] = {
    "plaintext": "protocols.plaintext:PlaintextProtocol",
    "ckks": "protocols.ckks:CKKSProtocol",
    "paillier": "protocols.threshold_paillier:packed_paillier",  # shared-key, or decryption="threshold"
    "paillier-per-value": "protocols.paillier:PerValuePaillierProtocol",
    "secagg": "protocols.secagg:SecAggProtocol",
    "dp": "protocols.dp.placements:central_dp",
    "local-dp": "protocols.dp.placements:local_dp",
    "dp-sgd": "protocols.dp.placements:dp_sgd",
    "secagg+dp": "protocols.dp.placements:secagg_dp",
    "ckks+dp": "protocols.dp.placements:ckks_dp",
}
_EXTRA_FOR = {"tenseal": "all", "phe": "all", "gmpy2": "all", "dp_accounting": "all"}
_REGISTERED: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Add a protection (a plug-in point for users' own protocols)."""
    if name in _BUILTIN or name in _REGISTERED:
        raise ConfigError(f"protection {name!r} is already registered")
    _REGISTERED[name] = factory


def names() -> list[str]:
    return [*_BUILTIN, *_REGISTERED]


def _factory(name: str) -> Factory:
    if name in _REGISTERED:
        return _REGISTERED[name]
    target = _BUILTIN.get(name)
    if target is None:
        raise ConfigError(f"unknown protection {name!r}; choose from {', '.join(names())}")
    module_name, attribute = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in _EXTRA_FOR:
            raise ConfigError(f"protection {name!r} needs {missing}: pip install 'privfed[{_EXTRA_FOR[missing]}]'"
                              ) from None
        raise
    return getattr(module, attribute)


def create(name: str, options: Mapping[str, Any] | None = None) -> AggregationProtocol:
    """A validated protocol instance for ``name`` with keyword ``options`` (unknown options are an error)."""
    factory = _factory(name)
    try:
        return factory(**dict(options or {}))
    except TypeError as exc:
        raise ConfigError(f"bad options for protection {name!r}: {exc}") from None


def protocol_class(name: str) -> type[AggregationProtocol]:
    """The class behind a name without instantiating it (for drop points and phase names in help texts)."""
    factory = _factory(name)
    if isinstance(factory, type):
        return factory
    return getattr(factory, "protocol_class", None) or type(factory())
