"""Vertical federated learning of sequence models: aligned entities (PSI), split LSTM/GRU, protected cut layer.

What each cut-layer protection hides from whom: :data:`protocols.vertical.PROTECTIONS` (``privfed vertical
--catalogue`` prints it). The torch-free protocol lives in :mod:`protocols.vertical`; this package holds the data
loading, the models and the in-process session.
"""

from __future__ import annotations

from .config import PartyConfig, VerticalConfig, load_vertical_config
from .session import VerticalAbort, run_vertical

__all__ = ["PartyConfig", "VerticalConfig", "load_vertical_config", "run_vertical", "VerticalAbort"]
