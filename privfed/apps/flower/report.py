"""One round of the Flower apps' JSON report: the local runtime's summary plus per-client tables and the aggregate.

Threat model: the record holds what the server learned anyway; per-client figures a round's protection hides are
removed by :func:`privfed.threat.disclosure.redact_round` before anything is written.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from protocols.base import LEARNED_BY_SERVER
from privfed.runtime.local import RoundReport

__all__ = ["report_record"]


def report_record(report: RoundReport, overhead: Mapping[str, Any], nodes: Mapping[int, int]) -> dict[str, Any]:
    """One round of the JSON report: the local runtime's summary plus per-client tables and the aggregate."""
    record = report.summary()
    record.update(
        survivor_ids=list(report.survivors),  # contributors: inputs in the result
        completed_ids=list(report.completed),  # clients that took part in every phase
        phases=list(report.phases),
        nodes={str(cid): node for cid, node in nodes.items()},
        upload_bytes={str(c): dict(p) for c, p in report.upload_bytes.items()},
        download_bytes={str(c): dict(p) for c, p in report.download_bytes.items()},
        client_seconds_by_client={str(c): s for c, s in report.client_seconds.items()},
        exchange_seconds=[[phase, seconds] for phase, seconds in overhead.get("exchange_seconds", [])],
        state_seconds={str(c): s for c, s in overhead.get("state_seconds", {}).items()},
    )
    if report.result is not None and report.result.learned_by == LEARNED_BY_SERVER:
        record["mean"] = [float(v) for v in np.asarray(report.result.mean, dtype=np.float64)]
        record["total_weight"] = float(report.result.total_weight)
    # with learned_by "key-holders" only the nodes learned the mean (kept in their own state); the server has none
    return record
