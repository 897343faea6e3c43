"""Scan every file of a run directory for secret-key material, seeds, shares and what fingerprints a client.

Threat model: a run directory is meant to be shareable (it holds byte counts, keyed digests, metrics and the model).
Anything that would let its reader decrypt, unmask or reconstruct an individual update, or confirm that a candidate
data set took part, must never land there. This scanner looks for it in every file, raw and inside base64 (standard
and URL-safe) / hex blobs embedded in text:

* PEM / OpenSSH private keys (``-----BEGIN ... PRIVATE KEY-----``) and DER (PKCS#8, PKCS#1, SEC1) private keys;
* a TenSEAL context that reports itself private (when TenSEAL is installed: every embedded blob carrying SEAL's
  serialisation magic is loaded and asked ``is_private()``);
* unkeyed digests: a JSON field named as a plain hash (``sha256``, ``sha1``, ``md5``, ``blake2b``, ``digest``,
  ``hash``, ``fingerprint``...) holding a digest-sized value. Training is seeded, so a plain hash of a message that
  carries client data repeats across runs and confirms membership; keyed digests (``hmac_sha256``, see
  :mod:`privfed.runtime.transcript`) and the configuration's own digest (``config_digest``) are not flagged;
* digests of registered client data (``client_data``: message payloads or records a caller knows): SHA-2, SHA-1,
  MD5, SHA-3 and BLAKE2 digests of each, in every encoding the secrets are searched in, under any field name;
* per-client figures that the round's protection hides (:mod:`privfed.threat.disclosure`): in every JSON object
  that is a round record (``round`` and ``protection``) and in a run summary (``plan``);
* JSON fields whose name says secret (``secret``, ``private``, ``seed``, ``share``, ``mask``, ``sk``) and whose value
  is key-sized (a string or list of >= 16 characters / items, or an integer >= 2^64) — the experiment seed, a small
  public integer, is not flagged;
* any value a caller registers as secret: bytes (searched raw, as hex and as base64 at every alignment, also inside
  decoded blobs) and integers such as Paillier's private primes p and q (searched as decimal, hex and big/little
  endian bytes).

A finding names the file, the offset and what matched; it never repeats the secret.

:func:`repeated_digests` compares two run directories: any digest-shaped string in both (the configuration digest
aside) is a fingerprint that survives across runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from privfed.threat.disclosure import withheld_round_figures, withheld_summary_figures

__all__ = ["SecretFinding", "scan_for_secrets", "scan_bytes", "repeated_digests", "digest_tokens",
           "CLIENT_DATA_DIGESTS"]

_PEM = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
_B64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{44,}={0,2}")
_HEX_RUN = re.compile(rb"(?:[0-9a-fA-F]{2}){32,}")
_SECRET_NAME = re.compile(r"(?i)(secret|private|seed|share|mask|^sk$|_sk$|^sk_|priv_?key|lambda_?n)")
_PUBLIC_NAMES = re.compile(r"(?i)(sha256|digest|count|bytes|size|seconds|_len$|length|public|kind|phase|shares?_"
                           r"(?:per|sent|received)|ratio|bits)")
_SEAL_MAGIC = b"\x5e\xa1"
#: a plain (unkeyed) hash by name; a keyed one says so (hmac, keyed, mac)
_UNKEYED_NAME = re.compile(r"(?i)(sha-?\d+|sha3|md5|blake2[bs]?|ripemd|(^|_)hash(es)?$|digest|fingerprint)")
_KEYED_NAME = re.compile(r"(?i)(hmac|keyed|(^|_)mac($|_))")
#: unkeyed digests a run directory may hold: the configuration's (public settings, no client data)
_ALLOWED_DIGEST_FIELDS = frozenset({"config_digest"})
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{32,128}$")
_B64_DIGEST = re.compile(r"^[A-Za-z0-9+/_-]{22,88}={0,2}$")
#: hash functions whose digests of registered client data are searched for
CLIENT_DATA_DIGESTS: tuple[str, ...] = ("sha256", "sha1", "md5", "sha224", "sha384", "sha512", "sha3_256",
                                        "sha3_512", "blake2b", "blake2s")
#: digest-shaped tokens in text: hex of 128..512 bits, base64 of 256 or 512 bits (for :func:`repeated_digests`)
_HEX_TOKEN = re.compile(rb"(?<![0-9a-fA-F])(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{56}|[0-9a-fA-F]{64}|"
                        rb"[0-9a-fA-F]{96}|[0-9a-fA-F]{128})(?![0-9a-fA-F])")
_B64_TOKEN = re.compile(rb"(?<![A-Za-z0-9+/_=-])(?:[A-Za-z0-9+/_-]{43}=?|[A-Za-z0-9+/_-]{86}(?:==)?)"
                        rb"(?![A-Za-z0-9+/_=-])")
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
        if any(c in text for c in b"-_") and any(c in text for c in b"+/"):
            # both alphabets: a blob of one glued to characters of the other (e.g. a path "/" before URL-safe
            # text): decode the pieces between the other alphabet's characters
            for other_alphabet in (rb"[^+/]+", rb"[^_-]+"):
                for piece in re.finditer(other_alphabet, text):
                    decoded = _decode_base64(piece.group()) if len(piece.group()) >= 44 else None
                    if decoded is not None:
                        yield match.start() + piece.start(), decoded[0], decoded[1]
            continue
        decoded = _decode_base64(text)
        if decoded is not None:
            yield match.start(), decoded[0], decoded[1]
    for match in _HEX_RUN.finditer(data):
        yield match.start(), bytes.fromhex(match.group().decode()), "hex"


def _decode_base64(text: bytes) -> tuple[bytes, str] | None:
    """Decode a run of base64 characters in the alphabet it uses (standard ``+/`` or URL-safe ``-_``; never both),
    dropping up to three trailing characters of a run that does not end on a 4-character boundary."""
    urlsafe, standard = any(c in text for c in b"-_"), any(c in text for c in b"+/")
    if urlsafe and standard:
        return None
    body = text.rstrip(b"=")
    if urlsafe:
        body, label = body.translate(bytes.maketrans(b"-_", b"+/")), "urlsafe base64"
    else:
        label = "base64"
    for cut in range(4):
        piece = body[:len(body) - cut] if cut else body
        if len(piece) % 4 == 1:
            continue
        try:
            return base64.b64decode(piece + b"=" * (-len(piece) % 4), validate=True), label
        except (binascii.Error, ValueError):
            continue
    return None


def _der_private_key(blob: bytes) -> bool:
    """Whether ``blob`` is a DER-encoded private key (PKCS#8, PKCS#1 or SEC1) that ``cryptography`` loads."""
    if len(blob) < 32 or blob[0] != 0x30:
        return False
    try:
        from cryptography.hazmat.primitives.serialization import load_der_private_key
    except ImportError:
        return False
    try:
        load_der_private_key(blob, password=None)
    except TypeError:
        return True  # encrypted with a password: still private key material
    except Exception:  # noqa: BLE001 - any parse failure means "not a DER private key"
        return False
    return True


def _private_tenseal_context(blob: bytes) -> bool:
    try:
        import tenseal as ts  # optional: only when installed
    except ImportError:
        return False
    try:
        return bool(ts.context_from(blob).is_private())
    except Exception:  # noqa: BLE001 - any parse failure means "not a context"
        return False


def _json_fields(value: Any, flagged: Callable[[str, Any], bool], path: str = "") -> Iterator[str]:
    """Paths (``a.b[2].c``) of every JSON field, at any depth, whose name and value ``flagged`` accepts."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            where = f"{path}.{name}" if path else name
            if flagged(name, item):
                yield where
            yield from _json_fields(item, flagged, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_fields(item, flagged, f"{path}[{i}]")


def _json_secret_fields(value: Any) -> Iterator[str]:
    """Paths of fields named like a secret (and not like public material) holding a key-sized value."""
    return _json_fields(value, lambda name, item: bool(_SECRET_NAME.search(name)) and not _PUBLIC_NAMES.search(name)
                        and _key_sized(item))


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
    if _der_private_key(data):
        found.append(SecretFinding(label, 0, "DER private key", "a private key that cryptography loads"))
    if depth == 0:
        for offset, blob, encoding in _blobs(data):
            if len(blob) < _MIN_SECRET_BYTES:
                continue
            for inner in scan_bytes(blob, label, needles, depth + 1):
                found.append(SecretFinding(label, offset, inner.kind, f"{inner.detail}, inside a {encoding} blob"))
    return found


def _client_data_needles(client_data: Iterable[bytes | bytearray | str]) -> list[tuple[bytes, str]]:
    out: list[tuple[bytes, str]] = []
    for index, item in enumerate(client_data):
        raw = item.encode() if isinstance(item, str) else bytes(item)
        for algorithm in CLIENT_DATA_DIGESTS:
            digest = hashlib.new(algorithm, raw).digest()
            out += [(form, f"{algorithm} of registered client data #{index} as {label}")
                    for form, label in _bytes_forms(digest)]
    return out


def _json_unkeyed_digests(value: Any) -> Iterator[str]:
    """Paths of JSON fields named as a plain hash whose value (or list of values) is digest-shaped."""
    return _json_fields(value, lambda name, item: bool(_UNKEYED_NAME.search(name)) and not _KEYED_NAME.search(name)
                        and name not in _ALLOWED_DIGEST_FIELDS and _digest_shaped(item))


def _digest_shaped(value: Any) -> bool:
    if isinstance(value, list):
        return any(_digest_shaped(v) for v in value)
    return isinstance(value, str) and bool(_HEX_DIGEST.match(value) or _B64_DIGEST.match(value))


def _hidden_client_figures(value: Any) -> Iterator[str]:
    """Per-client figures that the protection hides, in every round record and run summary inside ``value``."""
    if isinstance(value, dict):
        if isinstance(value.get("plan"), list) and any(isinstance(p, dict) and "protection" in p
                                                       for p in value["plan"]):
            yield from (f"summary: {p}" for p in withheld_summary_figures(value))
        if "round" in value and isinstance(value.get("protection"), str):
            yield from (f"round {value['round']} ({value['protection']}): {p}"
                        for p in withheld_round_figures(value))
        for item in value.values():
            if isinstance(item, (dict, list)):
                yield from _hidden_client_figures(item)
    elif isinstance(value, list):
        for item in value:
            yield from _hidden_client_figures(item)


def scan_for_secrets(run_dir: str | Path, secrets: Iterable[bytes | bytearray | str | int] = (),
                     client_data: Iterable[bytes | bytearray | str] = ()) -> list[SecretFinding]:
    """Every suspected secret or client fingerprint in every file under ``run_dir`` (empty list: none found).

    ``secrets`` registers known secret values (keys, seeds, shares as bytes; private numbers such as Paillier's p
    and q as integers) to search for in every encoding listed in the module docstring. ``client_data`` registers
    values that are functions of client data (message payloads, records): any plain digest of one, in any
    encoding and under any name, is a finding.
    """
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"run directory {root} does not exist")
    needles = _needles(secrets)
    digests = _client_data_needles(client_data)
    findings: list[SecretFinding] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        label = str(path.relative_to(root))
        if path.stat().st_size > _MAX_FILE_BYTES:
            findings.append(SecretFinding(label, 0, "unscanned", "file larger than 1 GiB"))
            continue
        data = path.read_bytes()
        findings += scan_bytes(data, label, needles)
        if digests:
            findings += [SecretFinding(f.path, f.offset, "digest of client data", f.detail)
                         for f in scan_bytes(data, label, digests) if f.kind == "registered secret"]
        for document, offset in _json_documents(path, data):
            for field_path in _json_secret_fields(document):
                findings.append(SecretFinding(label, offset, "secret-named JSON field", field_path))
            for field_path in _json_unkeyed_digests(document):
                findings.append(SecretFinding(label, offset, "unkeyed digest",
                                              f"{field_path}: a plain hash (key it with the run's HMAC key)"))
            for where in _hidden_client_figures(document):
                findings.append(SecretFinding(label, offset, "per-client figure the protection hides", where))
    return findings


def digest_tokens(run_dir: str | Path) -> dict[str, set[str]]:
    """Every digest-shaped string in the files under ``run_dir`` (hex of 128 to 512 bits, base64 of 256 or 512
    bits), mapped to the files holding it; values of ``config_digest`` fields are left out."""
    root = Path(run_dir)
    allowed: set[bytes] = set()
    tokens: dict[str, set[str]] = {}
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size <= _MAX_FILE_BYTES)
    for path in files:
        data = path.read_bytes()
        for document, _ in _json_documents(path, data):
            allowed |= {str(v).encode() for v in _field_values(document, _ALLOWED_DIGEST_FIELDS)}
    for path in files:
        data = path.read_bytes()
        for pattern in (_HEX_TOKEN, _B64_TOKEN):
            for match in pattern.finditer(data):
                token = match.group()
                if token not in allowed:
                    tokens.setdefault(token.decode(), set()).add(str(path.relative_to(root)))
    return tokens


def repeated_digests(run_dir: str | Path, other_run_dir: str | Path) -> list[SecretFinding]:
    """Digest-shaped strings that ``run_dir`` shares with ``other_run_dir`` (the configuration digest aside): a
    digest that survives across runs fingerprints what it hashes. Findings name the files, not the digest."""
    mine, theirs = digest_tokens(run_dir), digest_tokens(other_run_dir)
    return [SecretFinding(sorted(mine[t])[0], 0, "digest repeated across runs",
                          f"also in {other_run_dir}/{sorted(theirs[t])[0]} ({len(t)} characters)")
            for t in sorted(set(mine) & set(theirs))]


def _field_values(value: Any, names: frozenset[str]) -> Iterator[Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in names:
                yield item
            yield from _field_values(item, names)
    elif isinstance(value, list):
        for item in value:
            yield from _field_values(item, names)


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
