"""Vertical federated learning, torch-free: PSI alignment and the cut-layer exchange as byte-speaking state machines.

Threat model: see :mod:`protocols.vertical.protections` (what each cut-layer protection hides from whom),
:mod:`protocols.psi` (alignment), :mod:`protocols.vertical.label_dp` (label DP) and the two machines
(:mod:`~protocols.vertical.feature`, :mod:`~protocols.vertical.label`). The embeddings' secure sum reuses privfed's
registered SecAgg protocol; nothing here implements new cryptography beyond the PSI.
"""

from __future__ import annotations

from .feature import BottomModel, FeatureParty
from .label import LabelParty
from .label_dp import LabelDP
from .messages import NAME, alignment_digest
from .protections import PROTECTIONS, CutLayerProtection, get, names, table

__all__ = ["NAME", "BottomModel", "FeatureParty", "LabelParty", "LabelDP", "PROTECTIONS", "CutLayerProtection",
           "get", "names", "table", "alignment_digest"]
