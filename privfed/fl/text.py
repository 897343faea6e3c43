"""Tokens and vocabularies: characters or words, ``<unk>`` at index 0 and, for padded (variable-length) samples,
``<pad>`` at index 1. Neither marker can be produced by :func:`tokenize` (a character is one symbol; words never
hold ``<`` or ``>``), so padding is never confused with text."""

from __future__ import annotations

import re
from collections import Counter

__all__ = ["UNK", "PAD", "tokenize", "build_vocab", "with_pad"]

UNK = "<unk>"
PAD = "<pad>"
_WORD = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, unit: str) -> list[str]:
    """Characters, or words and punctuation marks."""
    return list(text) if unit == "char" else _WORD.findall(text)


def build_vocab(token_lists: list[list[str]], unit: str, vocab_size: int) -> tuple[str, ...]:
    """``<unk>`` then every character (sorted), or the ``vocab_size - 1`` most frequent words (ties by name)."""
    counts = Counter(token for tokens in token_lists for token in tokens)
    if unit == "char":
        return (UNK, *sorted(counts))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:vocab_size - 1]
    return (UNK, *sorted(word for word, _ in ranked))


def with_pad(vocab: tuple[str, ...]) -> tuple[str, ...]:
    """The vocabulary with ``<pad>`` at index 1 (``<unk>`` stays at 0)."""
    return (vocab[0], PAD, *vocab[1:])
