"""The ServerApp's privfed run directory: the same files a local ``privfed run`` writes, from a Flower deployment.

:class:`FlowerRunRecorder` wraps :class:`privfed.experiment.rundir.RunDir`: ``config.json``, ``rounds.jsonl`` (one
line per round, through the disclosure rule), ``transcripts/round_NNN.json`` (what each party received: kind, size,
keyed digest under a per-run key never written), ``checkpoint.json`` (the global model, for inspection; resuming a
Flower run is not supported yet) and ``summary.json``. The privacy ledger records each round's DP events as the
in-process loop does (the protocol's own events; nothing here computes an epsilon).

Differences from a local run, recorded in ``summary.json`` under ``runtime``: the server never sees the updates, so
there is no out-of-band verifier (``verifier_max_abs_error`` is None); metrics come from federated evaluation
(:mod:`privfed.apps.flower.training`); ``data`` describes the public schema, never a node's data.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from protocols.errors import ConfigError
from privfed.experiment.fedavg import (reported_unit, ledger_from_json, new_ledger, privacy_figures, package_versions,
                                      report_delta)
from privfed.experiment.rundir import RunDir, config_digest, decode_vector, encode_vector, to_jsonable
from privfed.fl.models import ParamLayout
from privfed.runtime.transcript import TranscriptKey
from privfed.threat import PlannedRound
from privfed.threat.disclosure import redact_round, redact_summary

__all__ = ["FlowerRunRecorder"]


class FlowerRunRecorder:
    """Writes one Flower training run as a privfed run directory."""

    def __init__(self, path: str | Path, task: Any, protections: list[str], reasons: list[str],
                 resume: bool = False, calibrated: str = "") -> None:
        self.started = time.perf_counter()
        self.task, self.config = task, task.config
        self.table = self.config.to_table()
        self.rundir = RunDir(path)
        previous = (json.loads(self.rundir.summary_path.read_text(encoding="utf-8"))
                    if resume and self.rundir.summary_path.exists() else {})
        checkpoint = self.rundir.prepare(self.table, resume)
        self.plan = [PlannedRound(r, p, reasons[r - 1] if r - 1 < len(reasons) else "")
                     for r, p in enumerate(protections, start=1)]
        self.unit = reported_unit(self.config, self.plan)
        self.ledger = new_ledger()
        self.dp_events = 0
        self.key = TranscriptKey()  # keys this run's transcript digests; never written
        self.totals: dict[str, float] = {"upload_bytes": 0, "download_bytes": 0, "client_protocol_seconds": 0.0,
                                         "server_seconds": 0.0, "local_training_seconds": 0.0, "aborted_rounds": 0}
        self.first_round, self.vector = 1, None
        if checkpoint is not None:  # --resume: continue from the last checkpoint, as privfed.experiment does
            if checkpoint.get("config_digest") != config_digest(self.table):
                raise ConfigError("--resume: the checkpoint was written under another configuration")
            if ParamLayout.from_json(checkpoint["layout"]) != task.layout:
                raise ConfigError("--resume: the checkpoint's parameter layout does not match the model")
            self.vector = decode_vector(checkpoint["vector"])
            self.ledger = ledger_from_json(checkpoint.get("ledger")) if checkpoint.get("ledger") else self.ledger
            self.totals.update(checkpoint["totals"])
            self.dp_events = int(checkpoint["dp_events"])
            self.first_round = int(checkpoint["round"]) + 1
        schema = task.schema
        data = ({"source": schema.source, "task": schema.task, "schema": "public task schema (no node data read)",
                 "vocab_size": len(schema.vocab), "channels": len(schema.columns), "seq_len": schema.seq_len,
                 "max_weight": schema.max_weight, "notes": []}
                if schema is not None else {**task.data.describe(), "notes": ["simulated partitions (no schema)"]})
        self.summary: dict[str, Any] = {
            "status": "running", "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": self.table, "seed": self.config.seed, "versions": package_versions(),
            "runtime": {"kind": "flower", "nodes": {},
                        "verifier": "none: the server never sees the updates",
                        "evaluation": "federated (node validation splits)"},
            "data": data, "plan": [{"round": p.round, "protection": p.protection, "reason": p.reason}
                                   for p in self.plan],
            "model": {"cell": self.config.model.cell if schema is None else schema.model.cell,
                      "task": data["task"], "parameters": task.layout.size},
            "max_weight": task.max_weight, "initial_metrics": previous.get("initial_metrics", {}),
            "resumed_from_round": self.first_round - 1,
            # target mode: calibrated on the submitting side (privfed.apps.flower.target), as the local loop does
            "noise_multiplier_from_target": json.loads(calibrated) if calibrated else None,
        }
        self.rundir.write_summary(self.summary)

    def initial(self, nodes: Mapping[int, int], metrics: Mapping[str, Any]) -> None:
        self.summary["runtime"]["nodes"] = {str(c): n for c, n in nodes.items()}
        self.summary["initial_metrics"] = dict(metrics)
        self.rundir.write_summary(self.summary)

    def round(self, record: dict[str, Any], report: Any, vector: np.ndarray) -> None:
        """Complete a round's record as the local loop does, then append it with its transcript and a checkpoint."""
        r = int(record["round"])
        planned = self.plan[r - 1] if r - 1 < len(self.plan) else None
        record["plan_reason"] = planned.reason if planned else ""
        record["clients"] = {}
        record["verifier_max_abs_error"] = None
        result = report.result if report is not None else None
        if report is not None:
            record["upload_bytes_total"] = sum(report.upload_total(c) for c in report.participants)
            record["download_bytes_total"] = sum(report.download_total(c) for c in report.participants)
            record["client_protocol_seconds_total"] = float(sum(report.client_seconds.values()))
        else:
            record.update(upload_bytes_total=0, download_bytes_total=0, client_protocol_seconds_total=0.0,
                          server_seconds=0.0)
        if result is not None:
            events = result.info.get("dp_events")
            if self.ledger is not None:
                if events is not None:
                    self.ledger.record(r, events)
                    self.dp_events += 1
                else:
                    self.ledger.record_unprotected(r, note=f"{record['protection']}: released without DP noise")
            record["dp_events"] = events
        else:
            self.totals["aborted_rounds"] += 1
        record.update(privacy_figures(self.ledger, self.dp_events, report_delta(self.config), self.unit))
        for key, total in (("upload_bytes", "upload_bytes_total"), ("download_bytes", "download_bytes_total"),
                           ("client_protocol_seconds", "client_protocol_seconds_total"),
                           ("server_seconds", "server_seconds"),
                           ("local_training_seconds", "local_training_wall_seconds")):
            self.totals[key] += float(record.get(total) or 0)
        clean = redact_round(to_jsonable(record))
        if report is not None and self.config.fl.transcripts:
            self.rundir.write_transcript(r, report.transcript)
        offset = self.rundir.append_round(clean)
        self.rundir.save_checkpoint({
            "round": r, "rounds_offset": offset, "config_digest": config_digest(self.table),
            "vector": encode_vector(vector), "layout": self.task.layout.to_json(),
            "ledger": self.ledger.to_json() if self.ledger is not None else None, "dp_events": self.dp_events,
            "totals": self.totals, "runtime": "flower"})

    def finish(self, error: str | None = None) -> None:
        rounds = self.rundir.read_rounds()
        complete = bool(rounds) and rounds[-1]["round"] == len(self.plan) and error is None
        self.summary.update({
            "status": "complete" if complete else ("failed" if error else "stopped"),
            "error": error, "rounds_completed": len(rounds),
            "totals": {**self.totals, "wall_seconds_this_process": time.perf_counter() - self.started},
            "final_metrics": rounds[-1]["metrics"] if rounds else self.summary["initial_metrics"],
            **{k: (rounds[-1].get(k) if rounds else None) for k in ("epsilon_model", "epsilon_server",
                                                                    "epsilon_unit")},
            "delta": report_delta(self.config),
        })
        self.rundir.write_summary(redact_summary(to_jsonable(self.summary)))
