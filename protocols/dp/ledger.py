"""The privacy ledger: frozen event records per round, per observer and unit, that compose into epsilons and can be
saved and re-checked.

Threat model: the ledger hides nothing; it is the audit record of what each round's releases cost in privacy, for
each observer of :mod:`protocols.dp.events` (``server``: the server and the declared colluders; ``model``: users of
the released model) and each unit (``user``, ``record``). It never reports one figure that is only true for one of
them: :meth:`PrivacyLedger.epsilon` takes the observer and the unit. A round recorded as mechanism ``none`` for an
(observer, unit) makes that epsilon infinite from then on: we report it, never hide it. Extra delta that an event
carries (tail mass of truncated integer noise, rounding-norm failure probability) is added honestly: epsilon is
computed at delta - margin with (1 + e^epsilon) * sum(delta_extra) <= margin. Events hold only public parameters
(noise multiplier, rates, counts), never noise or data.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping

from ..errors import ConfigError
from .accounting import ACCOUNTANTS, epsilon_of_events, make_event
from .events import OBSERVERS, UNITS, RoundEvents, no_dp_events
from .mechanisms import check_delta, check_positive, check_rate

__all__ = ["PrivacyEvent", "PrivacyLedger", "LEVELS", "LEDGER_VERSION", "epsilon_of"]

LEVELS = UNITS
EVENT_MECHANISMS = ("gaussian", "laplace", "none")
LEDGER_VERSION = 2


def epsilon_of(events: Iterable["PrivacyEvent"], delta: float, accountant: str = "pld") -> float:
    """Epsilon at ``delta`` of the composition of ``events`` (one observer and unit): infinite once any is ``none``;
    extra delta charged as described in the module docstring. The plan check and the ledger both call this."""
    delta = check_delta(delta)
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    events = list(events)
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


@dataclass(frozen=True)
class PrivacyEvent:
    """One round's release as one ``observer`` sees it at one unit (``level``): ``count`` compositions of a (Poisson
    rate ``sample_rate``) ``mechanism`` with ``noise_multiplier`` (noise std / L2 sensitivity, or Laplace scale / L1
    sensitivity)."""

    round: int
    mechanism: str
    level: str
    observer: str = "model"
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
        if self.observer not in OBSERVERS:
            raise ConfigError(f"observer must be one of {OBSERVERS}, got {self.observer!r}")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ConfigError(f"count must be an integer >= 1, got {self.count!r}")
        check_positive("delta_extra", self.delta_extra, allow_zero=True)
        if self.mechanism != "none":
            check_positive("noise_multiplier", self.noise_multiplier, allow_zero=False)
            if not math.isfinite(self.noise_multiplier):
                raise ConfigError("noise_multiplier must be finite for a noised event")
            check_rate("sample_rate", self.sample_rate)

    @classmethod
    def from_dict(cls, round_id: int, event: Mapping[str, Any]) -> "PrivacyEvent":
        known = {f.name for f in fields(cls)} - {"round"}
        unknown = set(event) - known
        if unknown:
            raise ConfigError(f"unknown privacy event fields {sorted(unknown)}")
        values = dict(event)
        if values.get("noise_multiplier") is None:
            values.pop("noise_multiplier", None)
        else:
            values["noise_multiplier"] = float(values["noise_multiplier"])
        return cls(round=int(round_id), **values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not math.isfinite(out["noise_multiplier"]):
            out["noise_multiplier"] = None  # JSON has no infinity; only "none" events carry it
        return out


def _round_events(value: RoundEvents | Mapping[str, Any]) -> RoundEvents:
    return value if isinstance(value, RoundEvents) else RoundEvents.from_json(value)


class PrivacyLedger:
    """Events in round order; ``epsilon(delta, observer=..., level=...)`` re-derives a figure from them alone."""

    def __init__(self, events: Iterable[PrivacyEvent] = ()) -> None:
        self._events: list[PrivacyEvent] = list(events)

    @property
    def events(self) -> tuple[PrivacyEvent, ...]:
        return tuple(self._events)

    def record(self, round_id: int, events: RoundEvents | Mapping[str, Any], repeats: int = 1
               ) -> tuple[PrivacyEvent, ...]:
        """Add one round's events (the ``dp_events`` a DP protection puts into ``AggregateResult.info``: a
        :class:`~protocols.dp.events.RoundEvents` or its JSON form, observer -> unit -> event). ``repeats``: the
        same round's releases ``repeats`` times over (a plan's alike rounds), each count and extra delta with it."""
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ConfigError(f"repeats must be an integer >= 1, got {repeats!r}")
        def scaled(event: Mapping[str, Any]) -> dict[str, Any]:
            if repeats == 1:
                return dict(event)
            return {**event, "count": event.get("count", 1) * repeats,
                    "delta_extra": event.get("delta_extra", 0.0) * repeats}

        added = tuple(PrivacyEvent.from_dict(round_id, {**scaled(e), "observer": o, "level": u})
                      for o, u, e in _round_events(events))
        self._events.extend(added)
        return added

    def record_unprotected(self, round_id: int, note: str = "plaintext release") -> tuple[PrivacyEvent, ...]:
        """A round whose released model carried no DP noise: every epsilon is infinite from here on."""
        return self.record(round_id, no_dp_events("none", note))

    def rounds(self) -> tuple[int, ...]:
        return tuple(sorted({e.round for e in self._events}))

    def epsilon(self, delta: float, accountant: str = "pld", level: str = "user", observer: str = "model") -> float:
        """Epsilon at ``delta`` against ``observer`` at unit ``level`` over every recorded round (math.inf once any
        round gave that observer no bound)."""
        if level not in LEVELS:
            raise ConfigError(f"level must be one of {LEVELS}, got {level!r}")
        if observer not in OBSERVERS:
            raise ConfigError(f"observer must be one of {OBSERVERS}, got {observer!r}")
        return epsilon_of((e for e in self._events if e.level == level and e.observer == observer), delta,
                          accountant)

    def table(self, delta: float, accountant: str = "pld") -> dict[str, dict[str, float]]:
        """Epsilon per observer and unit (identical event lists are accounted once)."""
        cache: dict[tuple, float] = {}
        out: dict[str, dict[str, float]] = {}
        for observer in OBSERVERS:
            for unit in UNITS:
                chosen = [e for e in self._events if e.level == unit and e.observer == observer]
                key = tuple((e.mechanism, e.noise_multiplier, e.sample_rate, e.count, e.delta_extra) for e in chosen)
                if key not in cache:
                    cache[key] = epsilon_of(chosen, delta, accountant)
                out.setdefault(observer, {})[unit] = cache[key]
        return out

    def summary(self, delta: float, accountant: str = "pld") -> dict[str, Any]:
        """Figures for rounds.jsonl: epsilon per observer and unit at ``delta`` (infinite where not bounded)."""
        return {"delta": delta, "accountant": accountant, "rounds": len(self.rounds()),
                "epsilon": self.table(delta, accountant),
                "unprotected_release": any(e.mechanism == "none" and e.observer == "model" and e.level == "user"
                                           for e in self._events)}

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
            if not isinstance(item, dict) or "round" not in item:
                raise ConfigError("privacy ledger: every event needs a round")
            item = dict(item)
            events.append(PrivacyEvent.from_dict(item.pop("round"), item))
        return cls(events)

    def __len__(self) -> int:
        return len(self.rounds())
