"""What a run record may say about individual clients under each protection: one rule, used by every writer of a
run directory (the FedAvg loop, :class:`privfed.experiment.rundir.RunDir`, the Flower report) and by the secret scan
that checks a finished directory.

Threat model: a run directory is meant to be shared. A protection that hides each client's update from the server
(HE, SecAgg, client-side noise) also hides its FedAvg weight, the client's sample count, which travels inside the
protected vector; a training loss or step count is a statistic of the client's data too. Writing such per-client
figures next to the protected transcript would undo what the protection hides, for every reader of the directory.

The rule comes from the threat catalogue's ``update_hiding`` (the single statement of whether a protection shows
each update to the server):

* ``update_hiding == "none"`` (``plaintext``, central ``dp``): the server sees every update and weight in the clear,
  and the run directory is the server's record, so it may keep per-client figures. Under central DP they are **not**
  covered by epsilon: such a directory is the trusted server's view, to be shared only as that view would be.
* any other protection: per-client figures are withheld (client names and ids stay: the server knows whom it
  invited and who dropped out). If the protection also adds DP noise, aggregates of un-noised client data (the mean
  training loss, the clipped fraction) are withheld as well: the protection's epsilon does not cover them.
* a protection the catalogue does not know: withheld (no guarantee can be stated, so nothing is disclosed).

What counts as a per-client figure is found structurally, so a new trainer metric is covered without a list to
update: every number inside a table keyed by client ids (``{"3": {"samples": 40, "train_loss": 2.1}}``), except
transport tables the runtime observes whatever the protection (byte counts, Flower node ids, protocol compute
seconds), plus the summary's
per-client data description (``data.train_samples``, keyed by client name).
"""

from __future__ import annotations

import copy
import re
from typing import Any, Iterable, Iterator, Mapping

from privfed.threat import catalogue

__all__ = ["reveals_client_figures", "withholds_client_aggregates", "withheld_round_figures", "redact_round",
           "withheld_summary_figures", "redact_summary", "CLIENT_DATA_AGGREGATES", "SUMMARY_CLIENT_TABLES"]

#: round-record paths of aggregates computed from un-noised client data (withheld under DP protections that hide
#: updates)
CLIENT_DATA_AGGREGATES: tuple[str, ...] = ("metrics.train_loss", "clipped_fraction")
#: summary paths of per-client tables keyed by client name (not by id, so not found structurally)
SUMMARY_CLIENT_TABLES: tuple[str, ...] = ("data.train_samples",)
#: tables keyed by client id that hold what the runtime observes whatever the protection, none a function of client
#: data for privfed's fixed-size messages: bytes on the wire, Flower node ids, the protocol's compute and state-saving
#: seconds (local training time, which grows with the client's data, is not among them)
_TRANSPORT_TABLE = re.compile(r"(?i)(bytes|^nodes$|node_id|^client_seconds_by_client$|^state_seconds$)")
_CLIENT_ID = re.compile(r"^\d+$")


def reveals_client_figures(protection: str) -> bool:
    """Whether a round under ``protection`` may record per-client figures (the server sees every update anyway)."""
    entry = catalogue.CATALOGUE.get(str(protection))
    return entry is not None and entry.update_hiding == catalogue.NONE


def withholds_client_aggregates(protection: str) -> bool:
    """Whether aggregates of un-noised client data are withheld too: a DP protection that hides updates (its epsilon
    would not cover them), or an unknown protection."""
    entry = catalogue.CATALOGUE.get(str(protection))
    return entry is None or (entry.update_hiding != catalogue.NONE and entry.has_dp)


def _client_tables(value: Any, path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every mapping keyed by client ids inside ``value`` (path, table), transport tables excepted."""
    if isinstance(value, Mapping):
        keys = [str(k) for k in value]
        name = path.rsplit(".", 1)[-1]
        if keys and all(_CLIENT_ID.match(k) for k in keys) and path:
            if not _TRANSPORT_TABLE.search(name):
                yield path, value
            return
        for key, item in value.items():
            yield from _client_tables(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _client_tables(item, f"{path}[{index}]")


def _numbers(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _numbers(item, f"{path}[{index}]")


def _get(document: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def per_client_figures(document: Any) -> list[str]:
    """Paths of every number in a table keyed by client ids (transport tables excepted)."""
    return [p for path, table in _client_tables(document) for key, item in table.items()
            for p in _numbers(item, f"{path}.{key}")]


def withheld_round_figures(record: Mapping[str, Any], protection: str | None = None) -> list[str]:
    """Paths in a round record that ``protection`` (default: the record's own) does not let it disclose."""
    name = str(protection if protection is not None else record.get("protection", ""))
    if reveals_client_figures(name):
        return []
    out = per_client_figures(record)
    if withholds_client_aggregates(name):
        out += [p for p in CLIENT_DATA_AGGREGATES if _get(record, p)[0] and _get(record, p)[1] is not None]
    return out


def _delete(document: dict[str, Any], dotted: str) -> None:
    """Remove the leaf at ``dotted`` (``a.b[2].c``-style paths from the finders)."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", dotted)
    node: Any = document
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part if part in node else int(part)]
    last = parts[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = None
    else:
        node.pop(last if last in node else int(last), None)


def redact_round(record: Mapping[str, Any], protection: str | None = None) -> dict[str, Any]:
    """A copy of ``record`` without what :func:`withheld_round_figures` names (idempotent)."""
    out = copy.deepcopy(dict(record))
    for path in reversed(withheld_round_figures(out, protection)):
        _delete(out, path)
    return out


def _plan_protections(summary: Mapping[str, Any]) -> list[str]:
    return [str(p.get("protection")) for p in summary.get("plan") or [] if isinstance(p, Mapping)]


def withheld_summary_figures(summary: Mapping[str, Any], protections: Iterable[str] | None = None) -> list[str]:
    """Paths in a run summary that must not be written: per-client figures, unless every round's protection
    (default: the summary's ``plan``) reveals them."""
    names = list(protections) if protections is not None else _plan_protections(summary)
    if names and all(reveals_client_figures(n) for n in names):
        return []
    out = [p for p in SUMMARY_CLIENT_TABLES if _get(summary, p)[0]]
    return out + [p for p in per_client_figures(summary) if not any(p.startswith(t + ".") for t in out)]


def redact_summary(summary: Mapping[str, Any], protections: Iterable[str] | None = None) -> dict[str, Any]:
    """A copy of ``summary`` without what :func:`withheld_summary_figures` names; a withheld client table is
    replaced by a note saying why (idempotent)."""
    out = copy.deepcopy(dict(summary))
    withheld = withheld_summary_figures(out, protections)
    for path in reversed(withheld):
        _delete(out, path)
        if path in SUMMARY_CLIENT_TABLES:
            parent, _, leaf = path.rpartition(".")
            found, node = _get(out, parent)
            if found and isinstance(node, dict):
                node[f"{leaf}_withheld"] = "per-client figures are hidden by the run's protections"
    return out
