"""The privacy ledger: frozen event records per round that compose into an epsilon and can be saved and re-checked.

Threat model: the ledger hides nothing; it is the audit record of what each round's release cost in privacy. It
states the unit protected (``level``: ``user`` for DP-FedAvg and distributed DP, ``record`` for DP-SGD inside
clients, ``local`` for what the server sees under local DP) and never mixes them silently. A round whose released
model carried no noise is recorded as mechanism ``none`` and makes epsilon infinite from then on: we report it,
never hide it. Extra delta that an event carries (tail mass of truncated integer noise, rounding-norm failure
probability) is added honestly: epsilon is computed at delta - margin with (1 + e^epsilon) * sum(delta_extra) <= margin.
Events hold only public parameters (noise multiplier, rates, counts), never noise or data.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping

from ..errors import ConfigError
from .accounting import ACCOUNTANTS, epsilon_of_events, make_event
from .mechanisms import check_delta, check_positive, check_rate

__all__ = ["PrivacyEvent", "PrivacyLedger", "LEVELS", "LEDGER_VERSION"]

LEVELS = ("user", "record", "local")
EVENT_MECHANISMS = ("gaussian", "laplace", "none")
LEDGER_VERSION = 1


@dataclass(frozen=True)
class PrivacyEvent:
    """One round's release: ``count`` compositions of a (Poisson rate ``sample_rate``) ``mechanism`` with
    ``noise_multiplier`` (noise std / L2 sensitivity, or Laplace scale / L1 sensitivity) at ``level``."""

    round: int
    mechanism: str
    level: str
    noise_multiplier: float = math.inf
    sample_rate: float = 1.0
    count: int = 1
    delta_extra: float = 0.0
    placement: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.round, bool) or not isinstance(self.round, int) or self.round < 0:
            raise ConfigError(f"round must be an integer >= 0, got {self.round!r}")
        if self.mechanism not in EVENT_MECHANISMS:
            raise ConfigError(f"mechanism must be one of {EVENT_MECHANISMS}, got {self.mechanism!r}")
        if self.level not in LEVELS:
            raise ConfigError(f"level must be one of {LEVELS}, got {self.level!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError(f"count must be an integer >= 1, got {self.count!r}")
        check_positive("delta_extra", self.delta_extra, allow_zero=True)
        if self.mechanism != "none":
            check_positive("noise_multiplier", self.noise_multiplier)
            check_rate("sample_rate", self.sample_rate)

    @classmethod
    def from_dict(cls, round_id: int, event: Mapping[str, Any]) -> "PrivacyEvent":
        known = {f.name for f in fields(cls)} - {"round"}
        unknown = set(event) - known
        if unknown:
            raise ConfigError(f"unknown privacy event fields {sorted(unknown)}")
        values = dict(event)
        if "noise_multiplier" in values:
            values["noise_multiplier"] = float(values["noise_multiplier"])
        return cls(round=int(round_id), **values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not math.isfinite(out["noise_multiplier"]):
            out["noise_multiplier"] = None  # JSON has no infinity; only "none" events carry it
        return out


class PrivacyLedger:
    """Events in round order; ``epsilon(delta)`` re-derives the run's epsilon from them alone."""

    def __init__(self, events: Iterable[PrivacyEvent] = ()) -> None:
        self._events: list[PrivacyEvent] = list(events)

    @property
    def events(self) -> tuple[PrivacyEvent, ...]:
        return tuple(self._events)

    def record(self, round_id: int, event: Mapping[str, Any] | PrivacyEvent) -> PrivacyEvent:
        """Add one round's event (the ``dp_event`` dict a DP protection puts into ``AggregateResult.info``)."""
        if not isinstance(event, PrivacyEvent):
            event = PrivacyEvent.from_dict(round_id, event)
        elif event.round != round_id:
            raise ConfigError(f"event is for round {event.round}, recorded as round {round_id}")
        self._events.append(event)
        return event

    def record_unprotected(self, round_id: int, level: str = "user", note: str = "plaintext release") -> PrivacyEvent:
        """A round whose released model carried no DP noise: epsilon is infinite from here on."""
        return self.record(round_id, PrivacyEvent(round_id, "none", level, note=note))

    def levels(self) -> tuple[str, ...]:
        return tuple(sorted({e.level for e in self._events if e.mechanism != "none"}))

    def _select(self, level: str | None) -> tuple[str | None, list[PrivacyEvent]]:
        levels = self.levels()
        if level is None:
            if len(levels) > 1:
                raise ConfigError(f"the ledger mixes privacy levels {levels}; ask for one with level=")
            level = levels[0] if levels else None
        elif level not in LEVELS:
            raise ConfigError(f"level must be one of {LEVELS}, got {level!r}")
        return level, [e for e in self._events if e.mechanism == "none" or e.level == level]

    def epsilon(self, delta: float, accountant: str = "pld", level: str | None = None) -> float:
        """Epsilon at ``delta`` over every recorded round (math.inf once any un-noised release was recorded)."""
        delta = check_delta(delta)
        if accountant not in ACCOUNTANTS:
            raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
        _, events = self._select(level)
        if any(e.mechanism == "none" for e in events):
            return math.inf
        if not events:
            return 0.0
        grouped: Counter = Counter()
        for e in events:
            grouped[(e.mechanism, e.noise_multiplier, e.sample_rate)] += e.count
        pairs = [(make_event(m, z, q), n) for (m, z, q), n in sorted(grouped.items())]
        extra = sum(e.delta_extra for e in events)
        if extra == 0:
            return epsilon_of_events(pairs, delta, accountant)
        for fraction in (1e-6, 1e-3, 0.1, 0.5):
            margin = delta * fraction
            eps = epsilon_of_events(pairs, delta - margin, accountant)
            if (1.0 + math.exp(min(eps, 700.0))) * extra <= margin:
                return eps
        return math.inf

    def summary(self, delta: float, accountant: str = "pld") -> dict[str, Any]:
        """Plain-JSON figures for rounds.jsonl: epsilon per level at ``delta`` (None when not finite)."""
        out: dict[str, Any] = {"delta": delta, "accountant": accountant, "rounds": len({e.round for e in self._events})}
        levels = self.levels() or (("user",) if self._events else ())
        for level in levels:
            eps = self.epsilon(delta, accountant, level)
            out[f"epsilon_{level}"] = eps if math.isfinite(eps) else None
        if len(levels) == 1:
            out["epsilon"] = out[f"epsilon_{levels[0]}"]
            out["level"] = levels[0]
        out["unprotected_release"] = any(e.mechanism == "none" for e in self._events)
        return out

    def to_json(self) -> str:
        return json.dumps({"version": LEDGER_VERSION, "events": [e.to_dict() for e in self._events]}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "PrivacyLedger":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"privacy ledger is not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != LEDGER_VERSION or not isinstance(data.get("events"),
                                                                                                 list):
            raise ConfigError(f"not a privacy ledger of version {LEDGER_VERSION}")
        events = []
        for item in data["events"]:
            item = dict(item)
            if item.get("noise_multiplier") is None:
                item["noise_multiplier"] = math.inf
            events.append(PrivacyEvent.from_dict(item.pop("round"), item))
        return cls(events)

    def __len__(self) -> int:
        return len(self._events)
