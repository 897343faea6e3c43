"""Empirical attacks: what an adversary actually recovers from a party's view.

Attacks on the server's view take exactly the bytes the server received in a round (``RoundReport.server_view``)
and are applied unchanged to every protection:

* **token presence** (text models): an update of a model with an embedding layer changes only the embedding rows of
  tokens the client's data contains (their gradient is exactly zero otherwise). The attacker parses every message
  the target client sent (:func:`protocols.wire.inspect`, no schema, no keys), reads any numeric vector whose length
  matches the model (floats as floats; ring integers as two's complement, as a fixed-point decoder would), and
  predicts the tokens whose embedding row changed. Where nothing readable arrives (ciphertexts), it falls back to
  the best blind guess, the union of all clients' tokens — the chance level. Scores: precision and recall against
  the target's true token set, beside that chance level.

Attacks on the released model:

* **canary exposure** (Carlini et al. 2019): exposure = log2 |candidates| - log2 rank of the inserted canary among
  random candidates of the same format, ranked by the model's loss;
* **loss-threshold membership inference**: AUC of -loss separating a client's training sequences (members) from
  its held-out ones, and the true-positive rate at 1% false positives.

Attacks that fail are results too: they bound what this attacker learns, not what every attacker could.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from protocols.errors import MessageError
from protocols.wire import inspect

__all__ = [
    "EmbeddingRows",
    "TokenRecovery",
    "readable_vectors",
    "tokens_changed",
    "token_presence_attack",
    "canary_exposure",
    "membership_inference",
]


@dataclass(frozen=True)
class EmbeddingRows:
    """Where the embedding matrix sits in the flat parameter vector the clients send."""

    offset: int
    vocab_size: int
    width: int
    dim: int  # length of the whole parameter vector

    def rows(self, vector: np.ndarray) -> np.ndarray:
        return vector[self.offset:self.offset + self.vocab_size * self.width].reshape(self.vocab_size, self.width)


@dataclass(frozen=True)
class TokenRecovery:
    precision: float
    recall: float
    chance: float
    predicted: int
    true: int
    view: str  # what the attacker could read: "update", "ring", "blind"


def readable_vectors(messages: Iterable[bytes], dim: int) -> tuple[list[np.ndarray], str]:
    """Every numeric array of length ``dim`` or ``dim + 1`` (weighted: the last slot is the weight) in the messages,
    as float64 of length ``dim``, and the kind of view ("update" for floats, "ring" for integers, "blind")."""
    vectors: list[np.ndarray] = []
    kind = "blind"
    for payload in messages:
        try:
            message = inspect(payload)
        except MessageError:
            continue
        for value in message.fields.values():
            if not isinstance(value, np.ndarray) or value.ndim != 1 or value.size not in (dim, dim + 1):
                continue
            if value.dtype.kind == "f":
                vector = value.astype(np.float64)
                if value.size == dim + 1 and vector[-1] != 0:
                    vector = vector[:-1] / vector[-1]
                vectors.append(vector[:dim])
                kind = "update"
            elif value.dtype.kind == "u":
                signed = value.view({1: np.int8, 2: np.int16, 4: np.int32, 8: np.int64}[value.dtype.itemsize])
                vectors.append(signed[:dim].astype(np.float64))
                kind = "ring" if kind == "blind" else kind
    return vectors, kind


def tokens_changed(vector: np.ndarray, layout: EmbeddingRows) -> set[int]:
    """Token ids whose embedding row is not exactly unchanged."""
    norms = np.linalg.norm(layout.rows(vector), axis=1)
    return {int(i) for i in np.flatnonzero(norms > 0)}


def token_presence_attack(messages: Iterable[bytes], layout: EmbeddingRows, true_tokens: set[int],
                          union_tokens: set[int]) -> TokenRecovery:
    """Recover the target's tokens from the messages it sent to the server (see the module docstring)."""
    if not true_tokens <= union_tokens:
        raise ValueError("the target's tokens must be part of the union")
    vectors, view = readable_vectors(messages, layout.dim)
    predicted: set[int] = set()
    for vector in vectors:
        predicted |= tokens_changed(vector, layout)
    predicted &= union_tokens
    if not predicted:
        predicted, view = set(union_tokens), "blind"
    hits = len(predicted & true_tokens)
    return TokenRecovery(precision=hits / len(predicted), recall=hits / len(true_tokens) if true_tokens else 0.0,
                         chance=len(true_tokens) / len(union_tokens), predicted=len(predicted),
                         true=len(true_tokens), view=view)


def canary_exposure(loss: Callable[[Sequence[int]], float], canary: Sequence[int],
                    candidates: Sequence[Sequence[int]]) -> float:
    """log2(|candidates| + 1) - log2(rank of the canary), ranking by loss (lower loss = more exposed).

    ``candidates`` are random sequences of the canary's format, excluding the canary itself. Ties count against the
    canary (rank is 1 + the number of candidates with loss <= the canary's).
    """
    canary_loss = loss(canary)
    rank = 1 + sum(1 for c in candidates if loss(c) <= canary_loss)
    return math.log2(len(candidates) + 1) - math.log2(rank)


def membership_inference(member_losses: Sequence[float], nonmember_losses: Sequence[float],
                         ) -> tuple[float, float]:
    """(AUC, TPR at 1% FPR) of the score -loss for members vs non-members (Mann-Whitney AUC, ties half)."""
    members = np.asarray(member_losses, dtype=np.float64)
    others = np.asarray(nonmember_losses, dtype=np.float64)
    if members.size == 0 or others.size == 0:
        raise ValueError("membership inference needs members and non-members")
    scores = np.concatenate([-members, -others])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    # average ranks for ties
    i = 0
    while i < scores.size:
        j = i
        while j + 1 < scores.size and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    auc = (ranks[:members.size].sum() - members.size * (members.size + 1) / 2) / (members.size * others.size)
    threshold = np.quantile(-others, 0.99)
    tpr = float(np.mean(-members > threshold))
    return float(auc), tpr
