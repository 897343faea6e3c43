"""Scan every file of a run directory for secret-key material, seeds and shares.

Threat model: a run directory is meant to be shareable (it holds byte counts, digests, metrics and the model).
Anything that would let its reader decrypt, unmask or reconstruct an individual update must never land there. This
scanner looks for it in every file, raw and inside base64 / hex blobs embedded in text:

* PEM / OpenSSH private keys (``-----BEGIN ... PRIVATE KEY-----``);
* a TenSEAL context that reports itself private (when TenSEAL is installed: every embedded blob carrying SEAL's
  serialisation magic is loaded and asked ``is_private()``);
* JSON fields whose name says secret (``secret``, ``private``, ``seed``, ``share``, ``mask``, ``sk``) and whose value
  is key-sized (a string or list of >= 16 characters / items, or an integer >= 2^64) — the experiment seed, a small
  public integer, is not flagged;
* any value a caller registers as secret: bytes (searched raw, as hex and as base64 at every alignment, also inside
  decoded blobs) and integers such as Paillier's private primes p and q (searched as decimal, hex and big/little
  endian bytes).

A finding names the file, the offset and what matched; it never repeats the secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

__all__ = ["SecretFinding", "scan_for_secrets", "scan_bytes"]

_PEM = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{44,}={0,2}")
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){32,}")
_SECRET_NAME = re.compile(r"(?i)(secret|private|seed|share|mask|^sk$|_sk$|^sk_|priv_?key|lambda_?n)")
_PUBLIC_NAMES = re.compile(r"(?i)(sha256|digest|count|bytes|size|seconds|_len$|length|public|kind|phase|shares?_"
                           r"(?:per|sent|received)|ratio|bits)")
_SEAL_MAGIC = b"\x5e\xa1"
_MIN_SECRET_BYTES = 8
_MAX_FILE_BYTES = 1 << 30


@dataclass(frozen=True)
class SecretFinding:
    """One suspected secret: where it is and what matched (never the secret itself)."""

    path: str
    offset: int
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}@{self.offset}: {self.kind} ({self.detail})"


def _int_forms(value: int) -> list[tuple[bytes, str]]:
    if value < 0:
        value = -value
    size = max(1, (value.bit_length() + 7) // 8)
    forms = [(str(value).encode(), "decimal"), (format(value, "x").encode(), "hex"),
             (format(value, "X").encode(), "HEX")]
    if size >= _MIN_SECRET_BYTES:
        forms += [(value.to_bytes(size, "big"), "big-endian bytes"), (value.to_bytes(size, "little"),
                                                                       "little-endian bytes")]
    return [(f, d) for f, d in forms if len(f) >= _MIN_SECRET_BYTES]


def _bytes_forms(value: bytes) -> list[tuple[bytes, str]]:
    forms = [(value, "raw bytes"), (value.hex().encode(), "hex"), (value.hex().upper().encode(), "HEX")]
    # base64 at each of the three alignments: drop the edge characters that depend on neighbouring bytes
    for shift in range(3):
        for encoder, label in ((base64.b64encode, "base64"), (base64.urlsafe_b64encode, "urlsafe base64")):
            encoded = encoder(bytes(shift) + value)
            start = (shift * 4 + 2) // 3 + (1 if shift else 0)
            core = encoded[start:len(encoded) - 4].rstrip(b"=")
            if len(core) >= 12:
                forms.append((core, f"{label} (alignment {shift})"))
    return [(f, d) for f, d in forms if len(f) >= _MIN_SECRET_BYTES]


def _needles(secrets: Iterable[bytes | bytearray | str | int]) -> list[tuple[bytes, str]]:
    out: list[tuple[bytes, str]] = []
    for index, secret in enumerate(secrets):
        if isinstance(secret, bool):
            continue
        if isinstance(secret, int):
            forms = _int_forms(secret)
        elif isinstance(secret, str):
            forms = _bytes_forms(secret.encode())
        else:
            forms = _bytes_forms(bytes(secret)) if len(secret) >= _MIN_SECRET_BYTES else []
        out += [(form, f"registered secret #{index} as {label}") for form, label in forms]
    return out


def _find_needles(data: bytes, needles: list[tuple[bytes, str]]) -> list[tuple[int, str]]:
    """First offset of every needle found in ``data``. Many needles: an 8-byte-prefix index checked with numpy over
    all eight alignments, then each candidate verified exactly (linear in the data, not data x needles)."""
    if len(needles) <= 16 or len(data) < _MIN_SECRET_BYTES:
        return [(at, what) for needle, what in needles if (at := data.find(needle)) >= 0]
    by_prefix: dict[int, list[tuple[bytes, str]]] = {}
    for needle, what in needles:
        by_prefix.setdefault(int.from_bytes(needle[:8], "little"), []).append((needle, what))
    keys = np.fromiter(by_prefix, dtype=np.uint64, count=len(by_prefix))
    hits: dict[str, int] = {}
    for shift in range(8):
        usable = (len(data) - shift) // 8
        if usable <= 0:
            continue
        windows = np.frombuffer(data, dtype="<u8", count=usable, offset=shift)
        for index in np.flatnonzero(np.isin(windows, keys)):
            at = shift + 8 * int(index)
            for needle, what in by_prefix[int(windows[index])]:
                if data.startswith(needle, at) and (what not in hits or at < hits[what]):
                    hits[what] = at
    return [(at, what) for what, at in hits.items()]


def _blobs(data: bytes) -> Iterator[tuple[int, bytes, str]]:
    """Decoded base64 and hex runs inside ``data`` (offset, decoded bytes, encoding)."""
    for match in _B64_RUN.finditer(data):
        text = match.group()
        for decoder, label in ((base64.b64decode, "base64"), (base64.urlsafe_b64decode, "urlsafe base64")):
            try:
                padded = text + b"=" * (-len(text) % 4)
                yield match.start(), decoder(padded), label
                break
            except (binascii.Error, ValueError):
                continue
    for match in _HEX_RUN.finditer(data):
        yield match.start(), bytes.fromhex(match.group().decode()), "hex"


def _private_tenseal_context(blob: bytes) -> bool:
    try:
        import tenseal as ts  # optional: only when installed
    except ImportError:
        return False
    try:
        return bool(ts.context_from(blob).is_private())
    except Exception:  # noqa: BLE001 - any parse failure means "not a context"
        return False


def _json_secret_fields(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            where = f"{path}.{name}" if path else name
            if _SECRET_NAME.search(name) and not _PUBLIC_NAMES.search(name) and _key_sized(item):
                yield where
            yield from _json_secret_fields(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_secret_fields(item, f"{path}[{i}]")


def _key_sized(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int):
        return abs(value) >= 1 << 64
    if isinstance(value, str):
        return len(value) >= 16
    if isinstance(value, list):
        return len(value) >= 16 or any(_key_sized(v) for v in value)
    return False


def scan_bytes(data: bytes, label: str, needles: list[tuple[bytes, str]], depth: int = 0) -> list[SecretFinding]:
    """Findings in one buffer (and, one level deep, in the base64 / hex blobs it embeds)."""
    found: list[SecretFinding] = []
    for match in _PEM.finditer(data):
        found.append(SecretFinding(label, match.start(), "PEM private key", match.group().decode(errors="replace")))
    for at, what in _find_needles(data, needles):
        found.append(SecretFinding(label, at, "registered secret", what))
    if _SEAL_MAGIC in data and len(data) > 256 and _private_tenseal_context(data):
        found.append(SecretFinding(label, 0, "TenSEAL secret key", "a serialised TenSEAL context that is private"))
    if depth == 0:
        for offset, blob, encoding in _blobs(data):
            if len(blob) < _MIN_SECRET_BYTES:
                continue
            for inner in scan_bytes(blob, label, needles, depth + 1):
                found.append(SecretFinding(label, offset, inner.kind, f"{inner.detail}, inside a {encoding} blob"))
    return found


def scan_for_secrets(run_dir: str | Path, secrets: Iterable[bytes | bytearray | str | int] = ()) -> list[SecretFinding]:
    """Every suspected secret in every file under ``run_dir`` (empty list: none found).

    ``secrets`` registers known secret values (keys, seeds, shares as bytes; private numbers such as Paillier's p
    and q as integers) to search for in every encoding listed in the module docstring.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run directory {root} does not exist")
    needles = _needles(secrets)
    findings: list[SecretFinding] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        label = str(path.relative_to(root))
        if path.stat().st_size > _MAX_FILE_BYTES:
            findings.append(SecretFinding(label, 0, "unscanned", "file larger than 1 GiB"))
            continue
        data = path.read_bytes()
        findings += scan_bytes(data, label, needles)
        for document, offset in _json_documents(path, data):
            for field_path in _json_secret_fields(document):
                findings.append(SecretFinding(label, offset, "secret-named JSON field", field_path))
    return findings


def _json_documents(path: Path, data: bytes) -> Iterator[tuple[Any, int]]:
    if path.suffix == ".json":
        try:
            yield json.loads(data), 0
        except ValueError:
            return
    elif path.suffix == ".jsonl":
        offset = 0
        for line in data.splitlines(keepends=True):
            if line.strip():
                try:
                    yield json.loads(line), offset
                except ValueError:
                    pass
            offset += len(line)
