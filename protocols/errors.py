"""The errors privfed's protocols raise.

Every failure a peer can cause (bad bytes, a replayed message, an impossible configuration, a round that cannot
finish) surfaces as a subclass of :class:`PrivfedError`, so callers catch one type and never see a decoder's
``struct.error`` or ``KeyError``. Messages never carry secret material (shares, seeds, keys, unmasked vectors).
"""

from __future__ import annotations

__all__ = [
    "PrivfedError",
    "ConfigError",
    "MessageError",
    "StaleMessageError",
    "ProtocolAbort",
    "HeadroomError",
    "DecryptionError",
]


class PrivfedError(Exception):
    """Base class of every error privfed raises on purpose."""


class ConfigError(PrivfedError, ValueError):
    """A parameter is out of range or parameters contradict each other; raised at construction."""


class MessageError(PrivfedError):
    """A message failed strict decoding or validation (type, length, dtype, round, sender, finiteness)."""


class StaleMessageError(MessageError):
    """A well-formed message for another round, protocol or recipient (a replay or a misroute)."""


class ProtocolAbort(PrivfedError):
    """The round cannot complete safely (for example fewer than the threshold of clients survive)."""


class HeadroomError(PrivfedError, OverflowError):
    """A fixed-point sum could overflow its modulus for the declared clients, weights and range."""


class DecryptionError(PrivfedError):
    """Decryption or authentication failed. Deliberately opaque: it never says which part was wrong."""
