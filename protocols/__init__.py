"""privfed's torch-free protocol layer: encodings, aggregation protocols and DP mechanisms that speak bytes.

This package imports neither ``torch`` nor ``privfed`` (a test proves it): it is the audit surface, reviewable
without reading any machine-learning code. Start at :mod:`protocols.base` (the contract) and
:mod:`protocols.registry` (protections by name).
"""

from .base import AggregateResult, AggregationProtocol, ClientUpdate
from .errors import (ConfigError, DecryptionError, HeadroomError, MessageError, PrivfedError, ProtocolAbort,
                     StaleMessageError)
from .registry import create, names, register

__all__ = [
    "AggregateResult",
    "AggregationProtocol",
    "ClientUpdate",
    "ConfigError",
    "DecryptionError",
    "HeadroomError",
    "MessageError",
    "PrivfedError",
    "ProtocolAbort",
    "StaleMessageError",
    "create",
    "names",
    "register",
]
__version__ = "0.1.0"
