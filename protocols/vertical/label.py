"""The label party's side of a vertical-FL session: it drives PSI alignment and the per-step cut-layer exchange.

Threat model: the label party holds the labels (and possibly sequences of its own) and the top model. It learns the
intersection of its ids with each feature party's ids and their set sizes (PSI), and per training step either each
feature party's embeddings of the requested rows (``concat``) or, through secure aggregation, only their sum
(``sum``; see :mod:`protocols.vertical.protections`). It validates every reply strictly (sender, step, kind,
shape, finiteness, entries within [-1, 1]) and refuses to train unless every feature party reports the same
alignment digest it computed: a wrong intersection, a wrong selection or a tampered PSI message aborts the session
with :class:`~protocols.errors.ProtocolAbort` before any row is embedded. It never learns a feature party's ids
outside the intersection.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError, MessageError, ProtocolAbort
from ..psi import PSIParty, hashed_points
from . import messages as m

__all__ = ["LabelParty"]


class LabelParty:
    """Label party of a session with ``n_parties`` feature parties (indices 0..n-1)."""

    def __init__(self, ids: Sequence[str], n_parties: int, combine: str, embedding_dims: Sequence[int]) -> None:
        if combine not in m.COMBINES:
            raise ConfigError(f"combine must be one of {m.COMBINES}, got {combine!r}")
        if n_parties < 1 or len(embedding_dims) != n_parties:
            raise ConfigError("one embedding size per feature party is needed")
        if combine == "sum" and (n_parties < 2 or len(set(embedding_dims)) != 1):
            raise ConfigError("a secure sum of embeddings needs >= 2 feature parties with one embedding size")
        self.ids, self.n, self.combine = [str(i) for i in ids], n_parties, combine
        self.dims = tuple(int(d) for d in embedding_dims)
        self._psi: dict[int, PSIParty] = {}  # one fresh scalar per feature party, made when the PSI starts
        self._shared: dict[int, list[str]] = {}
        self._theirs: dict[int, np.ndarray] = {}
        self.pairwise_sizes: dict[int, int] = {}
        self.their_set_sizes: dict[int, int] = {}
        self.aligned: list[str] = []
        self.digest = b""
        self._confirmed: set[int] = set()

    # --- alignment -------------------------------------------------------------------------------------------
    def psi_requests(self) -> dict[int, bytes]:
        points = hashed_points(self.ids)
        self._psi = {k: PSIParty(self.ids, points) for k in range(self.n)}
        return {k: m.pack(m.PSI_MASKED, m.ALIGN_ROUND, m.LABEL_PARTY, masked=self._psi[k].masked_own())
                for k in range(self.n)}

    def receive_psi(self, k: int, payload: bytes) -> None:
        msg = m.unpack(payload, [m.PSI_REMASKED], m.ALIGN_ROUND, k)
        theirs = m.elements(msg["masked"], "psi-remasked")
        self._theirs[k] = theirs
        shared = self._psi[k].intersection(m.elements(msg["remasked"], "psi-remasked"), self._psi[k].remask(theirs))
        self._shared[k] = shared
        self.pairwise_sizes[k] = len(shared)
        self.their_set_sizes[k] = int(theirs.shape[0])

    def finish_psi(self) -> dict[int, bytes]:
        missing = [k for k in range(self.n) if k not in self._shared]
        if missing:
            raise ProtocolAbort(f"feature parties {missing} did not answer the PSI")
        common = set(self._shared[0]).intersection(*(set(s) for s in self._shared.values()))
        if not common:
            raise ProtocolAbort("the parties' ids never intersect: no entity is held by every party")
        self.aligned = sorted(common)
        self.digest = m.alignment_digest(self.aligned)
        out = {}
        for k in range(self.n):
            selection = np.array([entity in common for entity in self._shared[k]], dtype=np.uint8)
            out[k] = m.pack(m.PSI_FINISH, m.ALIGN_ROUND, m.LABEL_PARTY, remasked=self._psi[k].remask(self._theirs[k]),
                            selection=selection, combine=self.combine)
        return out

    def receive_aligned(self, k: int, payload: bytes) -> None:
        msg = m.unpack(payload, [m.ALIGNED], m.ALIGN_ROUND, k)
        if msg["digest"] != self.digest or msg["size"] != len(self.aligned):
            raise ProtocolAbort(f"feature party {k} aligned {msg['size']} entities differently from the label party "
                                f"({len(self.aligned)}): refusing to train on misaligned rows")
        self._confirmed.add(k)

    @property
    def ready(self) -> bool:
        return len(self._confirmed) == self.n

    # --- training steps --------------------------------------------------------------------------------------
    def forward_requests(self, step: int, rows: np.ndarray, train: bool) -> dict[int, bytes]:
        if not self.ready:
            raise ProtocolAbort("alignment not confirmed by every feature party")
        if step <= m.ALIGN_ROUND:
            raise ConfigError("steps are numbered from 1")
        rows = np.asarray(rows, dtype=np.int64)
        return {k: m.pack(m.FORWARD, step, m.LABEL_PARTY, rows=rows, train=int(train), alignment=self.digest)
                for k in range(self.n)}

    def receive_embedding(self, k: int, step: int, batch: int, payload: bytes) -> np.ndarray:
        if self.combine != "concat":
            raise MessageError("embeddings arrive only through secure aggregation in this session")
        msg = m.unpack(payload, [m.EMBEDDING], step, k)
        return m.matrix(msg["values"], batch, self.dims[k], f"embedding of party {k}", bound=1.0)

    def check_sum(self, total: np.ndarray, batch: int, contributors: Sequence[int]) -> np.ndarray:
        """The secure-aggregation result as (batch, dim); every feature party must be in it."""
        if sorted(contributors) != list(range(self.n)):
            raise ProtocolAbort(f"secure sum holds parties {sorted(contributors)}, not all {self.n}: "
                                "a sum without a party's features would misalign the top model's input")
        total = np.asarray(total, dtype=np.float32)
        if total.size != batch * self.dims[0] or not np.isfinite(total).all():
            raise ProtocolAbort(f"secure sum holds {total.size} values, expected {batch}x{self.dims[0]}")
        return total.reshape(batch, self.dims[0])

    def gradient_messages(self, step: int, gradients: Mapping[int, np.ndarray]) -> dict[int, bytes]:
        return {k: m.pack(m.GRADIENT, step, m.LABEL_PARTY, values=np.asarray(g, dtype=np.float32))
                for k, g in gradients.items()}

    def stop_messages(self, step: int, reason: str) -> dict[int, bytes]:
        return {k: m.pack(m.STOP, step, m.LABEL_PARTY, reason=reason[:4096]) for k in range(self.n)}
