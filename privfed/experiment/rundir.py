"""The run directory: per-round records, transcripts, summary and an atomic checkpoint for ``--resume``.

Layout::

    <out>/config.json            the validated configuration of the run (resume checks it is unchanged)
    <out>/rounds.jsonl           one JSON object per completed or aborted round, in round order
    <out>/transcripts/round_NNN.json   what each party received: phase, sender, recipient, kind, size, hmac_sha256
    <out>/checkpoint.json        model vector (base64 float32), layout, round, privacy ledger, totals
    <out>/summary.json           config, seed, package versions, data, totals, final metrics, status

Crash safety: a round's line is appended to ``rounds.jsonl`` and fsynced first, then the checkpoint (which records
the byte length of ``rounds.jsonl`` it covers) is written to a temporary file and moved into place with
``os.replace``. On resume the file is truncated to that length, so a line written after the last checkpoint (or a
half-written one) is dropped and its round re-run: every round appears exactly once. The checkpoint is JSON, not
pickle, so loading one never executes code.

What the directory reveals (it is meant to be shared; see SECURITY.md, "What a run directory reveals"): message
digests are keyed (HMAC-SHA256 under a per-run key that is never written, :mod:`privfed.runtime.transcript`), so two
runs of the same configuration and seed share no digest but the configuration's own (:func:`config_digest`, a hash
of public settings); round records and the summary go through :mod:`privfed.threat.disclosure` on every write, so
a protection that hides individual updates also keeps each client's sample count, loss and trainer metrics out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from protocols.errors import ConfigError
from privfed.jsonable import to_jsonable
from privfed.runtime.transcript import DIGEST_FIELD, TranscriptEntry
from privfed.threat.disclosure import redact_round, redact_summary

__all__ = ["RunDir", "to_jsonable", "encode_vector", "decode_vector", "atomic_write_json", "config_digest"]

CHECKPOINT_FORMAT = "privfed-checkpoint/1"
_TRANSCRIPT_FIELDS = frozenset({"phase", "sender", "recipient", "kind", "size", DIGEST_FIELD})


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype="<f4").astype(np.float32)


def _dumps(payload: Any, **kwargs: Any) -> str:
    return json.dumps(to_jsonable(payload), allow_nan=False, **kwargs)


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace`` (readers see the old or the new file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(_dumps(payload, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def config_digest(table: Mapping[str, Any]) -> str:
    """SHA-256 of the configuration (public settings only, no client data): the one unkeyed digest a run directory
    holds, the same across runs of one configuration by design (``--resume`` compares it)."""
    return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()


class RunDir:
    """One run's output directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rounds_path = self.path / "rounds.jsonl"
        self.summary_path = self.path / "summary.json"
        self.checkpoint_path = self.path / "checkpoint.json"
        self.config_path = self.path / "config.json"
        self.transcripts = self.path / "transcripts"

    def prepare(self, config_table: Mapping[str, Any], resume: bool) -> dict[str, Any] | None:
        """Create the directory; on resume return the last checkpoint (or None) after checking the config."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.transcripts.mkdir(exist_ok=True)
        checkpoint = self.load_checkpoint() if resume else None
        if resume and self.config_path.exists():
            stored = json.loads(self.config_path.read_text(encoding="utf-8"))
            if config_digest(stored) != config_digest(config_table):
                changed = sorted(k for k in set(stored) | set(config_table) if stored.get(k) != config_table.get(k))
                raise ConfigError(f"--resume: the configuration differs from the run in {self.path} "
                                  f"(sections {changed}); resume with the same config and seed")
        if not resume and self.rounds_path.exists() and self.rounds_path.stat().st_size > 0:
            raise ConfigError(f"{self.path} already holds a run; pass --resume to continue it or choose another --out")
        atomic_write_json(self.config_path, config_table)
        self.truncate_rounds(int(checkpoint["rounds_offset"]) if checkpoint else 0)
        return checkpoint

    def truncate_rounds(self, offset: int) -> None:
        """Drop anything in rounds.jsonl beyond ``offset`` bytes (rounds after the checkpoint, partial lines)."""
        with self.rounds_path.open("a+b") as handle:
            handle.truncate(offset)
            handle.flush()
            os.fsync(handle.fileno())

    def append_round(self, record: Mapping[str, Any]) -> int:
        """Append one line (without the per-client figures its protection hides), fsync, and return the file's new
        length (stored in the next checkpoint)."""
        line = (_dumps(redact_round(to_jsonable(record))) + "\n").encode("utf-8")
        with self.rounds_path.open("ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
            return handle.tell()

    def read_rounds(self) -> list[dict[str, Any]]:
        if not self.rounds_path.exists():
            return []
        return [json.loads(line) for line in self.rounds_path.read_text(encoding="utf-8").splitlines() if line]

    def write_transcript(self, round_id: int, entries: Iterable[TranscriptEntry | Mapping[str, Any]]) -> None:
        """Write what each party received in round ``round_id``. Every entry must carry a keyed digest
        (``hmac_sha256``) and no other: a plain hash of a message would fingerprint the client data it carries."""
        messages = []
        for entry in entries:
            item = entry.as_dict() if isinstance(entry, TranscriptEntry) else dict(entry)
            if set(item) != _TRANSCRIPT_FIELDS:
                raise ConfigError(f"transcript entry of round {round_id} has fields {sorted(item)}; expected "
                                  f"{sorted(_TRANSCRIPT_FIELDS)} (a keyed digest, never a plain hash)")
            messages.append(item)
        atomic_write_json(self.transcripts / f"round_{round_id:03d}.json", {"round": round_id, "messages": messages})

    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        atomic_write_json(self.checkpoint_path, {"format": CHECKPOINT_FORMAT, **state})

    def load_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        try:
            state = json.loads(self.checkpoint_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ConfigError(f"checkpoint {self.checkpoint_path} is not valid JSON: {exc}") from None
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"checkpoint {self.checkpoint_path} has format {state.get('format')!r}, "
                              f"expected {CHECKPOINT_FORMAT!r}")
        return state

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write the summary without the per-client figures the plan's protections hide."""
        atomic_write_json(self.summary_path, redact_summary(to_jsonable(summary)))
