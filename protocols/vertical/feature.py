"""The feature party's state machine: PSI alignment, then one forward (and, when training, one backward) per step.

Threat model: the feature party holds its own event sequences and a bottom model; it must not reveal more than its
cut-layer output for the rows the label party asks for (under ``concat``: the embeddings themselves; under ``sum``:
its embedding only as an input to secure aggregation). It trusts nobody's bytes: every request passes strict
decoding; the PSI must finish before any row is embedded; every forward request must carry the alignment digest
this party computed itself (so it never embeds rows of an alignment it did not agree to); steps strictly increase
(a replayed or reordered request raises :class:`~protocols.errors.StaleMessageError`); row indices must be unique
and inside the aligned set; a gradient must answer the pending training forward exactly (step, shape, finite,
within ``gradient_bound``). Any refusal raises a :class:`~protocols.errors.PrivfedError` and the session aborts.
What the gradient reveals about the labels is the label party's protection choice (``label-dp``), not this module's.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..base import ClientUpdate
from ..errors import MessageError, ProtocolAbort, StaleMessageError
from ..psi import PSIParty
from . import messages as m

__all__ = ["BottomModel", "FeatureParty"]


class BottomModel(Protocol):
    """What the feature party's machine needs from its (torch) bottom model; privfed.vertical implements it."""

    embedding_dim: int

    def align(self, ids: Sequence[str]) -> None:
        """Order this party's data by the aligned ids (row r of every later request is ``ids[r]``)."""

    def embed(self, rows: np.ndarray, train: bool) -> np.ndarray:
        """float32 (len(rows), embedding_dim) embeddings in [-1, 1]."""

    def backward(self, gradient: np.ndarray) -> None:
        """Apply d loss / d embedding of the last training forward."""


class FeatureParty:
    """Feature party ``index``: ``handle(request) -> reply or None``."""

    def __init__(self, index: int, ids: Sequence[str], model: BottomModel, *, gradient_bound: float = 1e6) -> None:
        if index < 0:
            raise ValueError("feature party index must be >= 0")
        self.index, self.model, self.gradient_bound = index, model, gradient_bound
        self._ids = list(ids)
        self._psi: PSIParty | None = None  # hashed and masked at the first PSI message (so its cost is the PSI's)
        self._state = "psi-1"
        self._their_remasked: np.ndarray | None = None
        self._aligned: list[str] = []
        self._digest = b""
        self._combine = ""
        self._last_step = m.ALIGN_ROUND
        self._pending: tuple[int, int] | None = None  # (step, batch) awaiting a gradient
        self._sum_input: tuple[int, np.ndarray] | None = None

    @property
    def state(self) -> str:
        return self._state

    @property
    def aligned_ids(self) -> list[str]:
        return list(self._aligned)

    def handle(self, payload: bytes) -> bytes | None:
        if self._state == "stopped":
            raise ProtocolAbort("session already stopped")
        kind, round_id = m.header(payload)
        if self._state == "psi-1":
            msg = m.unpack(payload, [m.PSI_MASKED], m.ALIGN_ROUND, m.LABEL_PARTY)
            theirs = m.elements(msg["masked"], "psi-masked")
            self._psi = PSIParty(self._ids)
            self._their_remasked = self._psi.remask(theirs)
            self._state = "psi-2"
            return m.pack(m.PSI_REMASKED, m.ALIGN_ROUND, self.index, remasked=self._their_remasked,
                          masked=self._psi.masked_own())
        if self._state == "psi-2":
            return self._finish_psi(m.unpack(payload, [m.PSI_FINISH], m.ALIGN_ROUND, m.LABEL_PARTY))
        if kind == m.STOP.kind:
            m.unpack(payload, [m.STOP], round_id, m.LABEL_PARTY)
            self._state = "stopped"
            return None
        if kind == m.GRADIENT.kind:
            return self._gradient(payload, round_id)
        return self._forward(payload, round_id)

    def _finish_psi(self, msg: m.Message) -> bytes:
        assert self._their_remasked is not None and self._psi is not None
        combine = msg["combine"]
        if combine not in m.COMBINES:
            raise MessageError(f"unknown combine {combine!r}")
        shared = self._psi.intersection(m.elements(msg["remasked"], "psi-finish"), self._their_remasked)
        selection = msg["selection"]
        if selection.ndim != 1 or selection.size != len(shared) or not np.isin(selection, (0, 1)).all():
            raise MessageError(f"selection must be {len(shared)} bytes of 0/1 (one per shared entity), "
                               f"got {selection.shape}")
        aligned = [entity for entity, keep in zip(shared, selection) if keep]
        if not aligned:
            raise ProtocolAbort("no entity is shared by every party: nothing to train on")
        self._aligned, self._combine = aligned, combine
        self._digest = m.alignment_digest(aligned)
        self.model.align(aligned)
        self._state = "ready"
        return m.pack(m.ALIGNED, m.ALIGN_ROUND, self.index, digest=self._digest, size=len(aligned))

    def _forward(self, payload: bytes, step: int) -> bytes | None:
        if step <= self._last_step:
            raise StaleMessageError(f"forward for step {step} after step {self._last_step} (replay)")
        msg = m.unpack(payload, [m.FORWARD], step, m.LABEL_PARTY)
        if msg["alignment"] != self._digest:
            raise ProtocolAbort("forward request for rows of another alignment: refusing to embed misaligned rows")
        rows = msg["rows"]
        if rows.ndim != 1 or rows.size == 0:
            raise MessageError("rows must be a non-empty vector")
        if rows.min() < 0 or rows.max() >= len(self._aligned) or np.unique(rows).size != rows.size:
            raise MessageError(f"rows must be unique indices in [0, {len(self._aligned)})")
        if self._pending is not None:
            raise ProtocolAbort(f"step {self._pending[0]} still awaits its gradient")
        self._last_step = step
        values = np.asarray(self.model.embed(rows, bool(msg["train"])), dtype=np.float32)
        m.matrix(values, rows.size, self.model.embedding_dim, "own embedding", bound=1.0)
        if msg["train"]:
            self._pending = (step, rows.size)
        if self._combine == "sum":
            self._sum_input = (step, values)
            return None
        return m.pack(m.EMBEDDING, step, self.index, values=values)

    def _gradient(self, payload: bytes, step: int) -> None:
        if self._pending is None or step != self._pending[0]:
            raise StaleMessageError(f"gradient for step {step}, but no training forward of that step is pending")
        msg = m.unpack(payload, [m.GRADIENT], step, m.LABEL_PARTY)
        grad = m.matrix(msg["values"], self._pending[1], self.model.embedding_dim, "gradient",
                        bound=self.gradient_bound)
        self._pending = None
        self.model.backward(grad)
        return None

    def secure_sum_input(self, step: int) -> ClientUpdate:
        """Under ``sum``: this step's embedding, flattened, as the party's input to secure aggregation (weight 1)."""
        if self._sum_input is None or self._sum_input[0] != step:
            raise ProtocolAbort(f"no embedding for step {step} to aggregate")
        _, values = self._sum_input
        self._sum_input = None
        return ClientUpdate(values.reshape(-1).astype(np.float32), 1.0)
