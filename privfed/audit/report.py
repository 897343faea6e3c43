"""``privfed audit RUN_DIR``: what each round protected, against whom, what every party received, and what it cost.

Threat model: the report is built only from the run directory the FedAvg loop wrote (``config.json``,
``rounds.jsonl``, ``transcripts/round_NNN.json``, ``summary.json``), which holds byte counts, keyed digests, metrics
and public protocol parameters — never secrets, never a plain hash of a message, never a per-client figure that the
round's protection hides (:func:`scan_for_secrets` checks those claims on every file). For every
round it re-runs the threat check of :mod:`privfed.threat.catalogue` against the run's declared ``[threat]`` (so a
run directory edited or produced without the check is still judged), lists what each party received (message kinds,
counts, byte totals, and each message's HMAC-SHA256 under the run's unwritten key: equal within the run, so a
message can be matched across parties, and shared with no other run), dropouts and rejected messages with their reasons, the cumulative epsilon, and
the out-of-band verifier's error against the plaintext aggregate beside the protocol's declared bound (for DP
protections the error includes the DP noise, which the bound excludes).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from protocols.errors import ConfigError
from privfed.audit.secret_scan import SecretFinding, repeated_digests, scan_for_secrets
from privfed.runtime.transcript import DIGEST_FIELD
from privfed.threat import catalogue
from privfed.threat.model import ThreatModel
from privfed.jsonable import to_jsonable as _jsonable

__all__ = ["PartyView", "RoundAudit", "AuditReport", "build_report", "scan_for_secrets", "SecretFinding"]

SERVER = "server"


@dataclass(frozen=True)
class PartyView:
    """What one party received in a round: message count and bytes per kind, and each message's keyed digest
    (HMAC-SHA256 under the run's key; a legacy run directory's plain ``sha256`` is shown too, and flagged by the
    secret scan)."""

    party: str
    messages: int
    bytes: int
    kinds: Mapping[str, int]
    digests: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"party": self.party, "messages": self.messages, "bytes": self.bytes, "kinds": dict(self.kinds),
                DIGEST_FIELD: list(self.digests)}


@dataclass(frozen=True)
class RoundAudit:
    """One round as audited."""

    round: int
    protection: str
    threat_ok: bool | None
    threat_check: str
    learned_by: str | None
    participants: int
    survivors: int
    aborted: str | None
    dropped: Mapping[str, Mapping[str, str]]
    rejected: Mapping[str, Mapping[str, str]]
    upload_bytes_per_client: float | None
    download_bytes_per_client: float | None
    upload_bytes_total: int | None
    download_bytes_total: int | None
    client_seconds: float | None
    server_seconds: float | None
    verifier_max_abs_error: float | None
    error_bound: float | None
    error_includes_dp_noise: bool
    epsilon: float | None
    received: tuple[PartyView, ...]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    #: clients whose input is in the result (may exceed ``survivors``: SecAgg keeps a client that dropped after
    #: uploading its masked input)
    contributors: int | None = None
    #: cumulative epsilon against the server and the declared colluders (``epsilon`` is against model users)
    epsilon_server: float | None = None
    #: per phase, how many distinct requests the server sent and to how many clients (from the keyed digests: equal
    #: within the run iff the bytes are equal), e.g. {"unmask": (1, 4)}: every client got the same unmask request
    requests: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "received"}
        out["received"] = [view.as_dict() for view in self.received]
        out["dropped"], out["rejected"] = dict(self.dropped), dict(self.rejected)
        out["metrics"] = dict(self.metrics)
        out["requests"] = {phase: {"distinct": d, "clients": n} for phase, (d, n) in self.requests.items()}
        return out


@dataclass(frozen=True)
class AuditReport:
    """The whole run: the declared threat model, each round's audit, run totals and secret-scan findings."""

    run_dir: str
    threat: str
    threat_declared: bool
    rounds: tuple[RoundAudit, ...]
    status: str
    final_epsilon: float | None
    delta: float | None
    secret_findings: tuple[SecretFinding, ...]
    scanned: bool = True
    epsilon_target: float | None = None
    #: final epsilon against the server and its colluders, and whether the threat model distrusts the server
    final_epsilon_server: float | None = None
    server_distrusted: bool = False

    @property
    def epsilon_ok(self) -> bool | None:
        """Whether the final epsilon meets the declared target against every observer the threat model distrusts
        (model users always; the server and its colluders unless it is trusted). None: no target."""
        if self.epsilon_target is None:
            return None
        figures = [self.final_epsilon] + ([self.final_epsilon_server] if self.server_distrusted else [])
        return all(e is not None and e <= self.epsilon_target for e in figures)

    @property
    def ok(self) -> bool:
        return (not self.secret_findings and all(r.threat_ok is not False for r in self.rounds)
                and self.epsilon_ok is not False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir, "threat": self.threat, "threat_declared": self.threat_declared,
            "status": self.status, "ok": self.ok, "final_epsilon": _json_eps(self.final_epsilon),
            "final_epsilon_server": _json_eps(self.final_epsilon_server),
            "epsilon_target": self.epsilon_target, "epsilon_ok": self.epsilon_ok,
            "delta": self.delta, "rounds": [_jsonable(r.as_dict()) for r in self.rounds],
            "secret_scan": self.scanned, "secret_findings": [f.__dict__ for f in self.secret_findings],
        }

    def to_markdown(self) -> str:
        all_meet = all(r.threat_ok is not False for r in self.rounds)
        lines = [f"# privfed audit: {self.run_dir}", "",
                 f"- threat model: {self.threat}" + ("" if self.threat_declared else " (none declared)"),
                 f"- status: {self.status}; rounds audited: {len(self.rounds)}",
                 f"- final cumulative epsilon: model users {_fmt_eps(self.final_epsilon)}; server (+ colluders) "
                 f"{_fmt_eps(self.final_epsilon_server)}"
                 + (f" at delta={self.delta:g}" if self.delta else "")
                 + ("" if self.epsilon_target is None else
                    f" (target {self.epsilon_target:g}: {'met' if self.epsilon_ok else 'EXCEEDED'})"),
                 "- threat check: " + ("every round meets the threat model" if all_meet
                                       else "SOME ROUNDS FALL SHORT (see below)"),
                 "- secret scan of every file: " + ("not run" if not self.scanned else
                                                    "no secret keys, seeds, shares, plain message digests or hidden "
                                                    "per-client figures found" if not self.secret_findings
                                                    else f"{len(self.secret_findings)} FINDING(S)"),
                 "", "## Summary", "",
                 "| round | protection | threat check | survivors | upload B/client | download B/client | "
                 "client s | server s | max abs error vs plaintext | error bound | cumulative epsilon |",
                 "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in self.rounds:
            check = "ok" if r.threat_ok else ("FAILS" if r.threat_ok is False else "n/a")
            err = _fmt(r.verifier_max_abs_error, ".2e") + (" (incl. DP noise)" if r.error_includes_dp_noise else "")
            in_sum = "" if r.contributors in (None, r.survivors) else f" ({r.contributors} in sum)"
            lines.append(f"| {r.round} | {r.protection} | {check} | {r.survivors}/{r.participants}{in_sum}"
                         f"{' (aborted)' if r.aborted else ''} | {_fmt(r.upload_bytes_per_client, ',.0f')} | "
                         f"{_fmt(r.download_bytes_per_client, ',.0f')} | {_fmt(r.client_seconds, '.4f')} | "
                         f"{_fmt(r.server_seconds, '.4f')} | {err} | {_fmt(r.error_bound, '.2e')} | "
                         f"{_fmt_eps(r.epsilon)} |")
        for r in self.rounds:
            lines += ["", f"## Round {r.round}: {r.protection}", "",
                      f"- threat check: {r.threat_check}",
                      f"- aggregate learned by: {r.learned_by or '-'}",
                      f"- survivors: {r.survivors} of {r.participants}"
                      + ("" if r.contributors is None else f"; inputs in the aggregate: {r.contributors}")
                      + (f"; ABORTED: {r.aborted}" if r.aborted else ""),
                      f"- verifier max abs error vs plaintext: {_fmt(r.verifier_max_abs_error, '.3e')} (declared "
                      f"bound {_fmt(r.error_bound, '.3e')}"
                      + (", excluding DP noise)" if r.error_includes_dp_noise else ")"),
                      f"- cumulative epsilon: {_fmt_eps(r.epsilon)}"]
            if r.requests:
                lines.append("- server requests per phase (distinct / clients, by keyed digest): " + ", ".join(
                    f"{phase} {d}/{n}" + (" (identical)" if d == 1 and n > 1 else "")
                    for phase, (d, n) in r.requests.items()))
            for label, table in (("dropped", r.dropped), ("rejected", r.rejected)):
                for cid, why in sorted(table.items(), key=lambda kv: str(kv[0])):
                    lines.append(f"- {label}: client {cid} at phase {why.get('phase', '?')}: {why.get('reason', '?')}")
            if r.received:
                lines += ["", "| party | messages | bytes | kinds received | keyed digest (HMAC-SHA256, first 16 hex of "
                          "each) |",
                          "|---|---:|---:|---|---|"]
                for view in r.received:
                    kinds = ", ".join(f"{k} x{n}" for k, n in sorted(view.kinds.items()))
                    digests = " ".join(d[:16] for d in view.digests)
                    lines.append(f"| {view.party} | {view.messages} | {view.bytes:,} | {kinds} | {digests} |")
            else:
                lines.append("- no transcript recorded for this round")
        if self.secret_findings:
            lines += ["", "## Secret-scan findings", ""]
            lines += [f"- {finding}" for finding in self.secret_findings]
        return "\n".join(lines) + "\n"


def build_report(run_dir: str | Path, *, scan: bool = True, against: str | Path | None = None) -> AuditReport:
    """Audit the run directory ``run_dir`` (see the module docstring). With ``against`` (another run directory, e.g.
    a rerun of the same configuration and seed), every digest the two share but the configuration's is a finding:
    a digest that survives across runs fingerprints what it hashes."""
    root = Path(run_dir)
    rounds_path = root / "rounds.jsonl"
    if not rounds_path.is_file():
        raise ConfigError(f"{root} is not a privfed run directory (no rounds.jsonl)")
    records = [json.loads(line) for line in rounds_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    summary = _read_json(root / "summary.json") or {}
    config = _read_json(root / "config.json") or summary.get("config") or {}
    threat_table = config.get("threat")
    threat = ThreatModel.coerce(threat_table) if threat_table else ThreatModel.trusted()
    options = (config.get("protection") or {}).get("options") or {}
    audits = tuple(_audit_round(record, threat, bool(threat_table), options, root) for record in records)
    findings = tuple(scan_for_secrets(root)) if scan else ()
    if against is not None:
        if not Path(against).is_dir():
            raise ConfigError(f"--against: {against} is not a directory")
        findings += tuple(repeated_digests(root, against))
    delta = summary.get("delta", (config.get("protection") or {}).get("delta"))
    return AuditReport(str(root), threat.describe(), bool(threat_table), audits, str(summary.get("status", "?")),
                       audits[-1].epsilon if audits else None, delta, findings, scan, threat.epsilon,
                       audits[-1].epsilon_server if audits else None, threat.distrusts_server)


def _audit_round(record: Mapping[str, Any], threat: ThreatModel, declared: bool, options: Mapping[str, Any],
                 root: Path) -> RoundAudit:
    r = int(record["round"])
    name = str(record.get("protection", "?"))
    participants = int(record.get("participants") or 0)
    if name in catalogue.CATALOGUE:
        context = catalogue.RoundContext(participants or None, options.get(name) or {})
        unmet = catalogue.unmet_requirements(name, threat, context)
        threat_ok: bool | None = not unmet
        check = ("meets it: " + catalogue.explain(name, threat, context)) if not unmet else \
            "FALLS SHORT: " + "; ".join(unmet)
        has_dp = catalogue.get(name).has_dp
    else:
        threat_ok, check, has_dp = None, f"{name!r} has no catalogue entry: no guarantee can be stated", False
    if not declared:
        check += " (no threat model declared: trusted server assumed)"
    transcript = _read_json(root / "transcripts" / f"round_{r:03d}.json")
    return RoundAudit(
        round=r, protection=name, threat_ok=threat_ok, threat_check=check, learned_by=record.get("learned_by"),
        participants=participants, survivors=int(record.get("survivors") or 0), aborted=record.get("aborted"),
        dropped=record.get("dropped") or {}, rejected=record.get("rejected") or {},
        upload_bytes_per_client=_num(record.get("upload_bytes_per_client")),
        download_bytes_per_client=_num(record.get("download_bytes_per_client")),
        upload_bytes_total=record.get("upload_bytes_total"), download_bytes_total=record.get("download_bytes_total"),
        client_seconds=_num(record.get("client_seconds")), server_seconds=_num(record.get("server_seconds")),
        verifier_max_abs_error=_num(record.get("verifier_max_abs_error")), error_bound=_num(record.get("error_bound")),
        error_includes_dp_noise=has_dp or record.get("dp_events") is not None,
        epsilon=_num(record.get("epsilon_model")), epsilon_server=_num(record.get("epsilon_server")),
        received=_views(transcript), metrics=record.get("metrics") or {},
        contributors=record.get("contributors"), requests=_requests(transcript))


def _views(transcript: Mapping[str, Any] | None) -> tuple[PartyView, ...]:
    if not transcript:
        return ()
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    sizes: dict[str, int] = defaultdict(int)
    digests: dict[str, list[str]] = defaultdict(list)
    for message in transcript.get("messages", []):
        party = str(message.get("recipient", "?"))
        kinds[party][f"{message.get('phase', '?')}/{message.get('kind', '?')}"] += 1
        sizes[party] += int(message.get("size") or 0)
        digests[party].append(str(message.get(DIGEST_FIELD, message.get("sha256", ""))))
    order = sorted(kinds, key=lambda p: (p != SERVER, int(p) if p.isdigit() else math.inf, p))
    return tuple(PartyView(p, sum(kinds[p].values()), sizes[p], dict(kinds[p]), tuple(digests[p])) for p in order)


def _requests(transcript: Mapping[str, Any] | None) -> dict[str, tuple[int, int]]:
    """Per phase, (distinct digests, recipients) of the server's requests to clients: with keyed digests, equal
    within one run exactly when the bytes are equal, so a broadcast the server sent differently to some clients
    (e.g. unequal alive/dropped lists in SecAgg's unmask phase) shows as more than one distinct request."""
    digests: dict[str, list[str]] = defaultdict(list)
    for message in (transcript or {}).get("messages", []):
        if message.get("sender") == SERVER:
            digests[str(message.get("phase", "?"))].append(str(message.get(DIGEST_FIELD, message.get("sha256", ""))))
    return {phase: (len(set(found)), len(found)) for phase, found in digests.items()}


def _read_json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None


def _num(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}.get(value)
    return float(value)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _fmt_eps(value: float | None) -> str:
    if value is None:
        return "none (no DP)"
    return "inf" if math.isinf(value) else f"{value:.4g}"


def _json_eps(value: float | None) -> Any:
    return "inf" if value is not None and math.isinf(value) else value


