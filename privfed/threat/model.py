"""The declared adversary: whom the user distrusts, how many clients may collude, how many drop, and the DP target.

Threat model of this module: it *is* the threat model. A :class:`ThreatModel` is what the user declares; the
catalogue (:mod:`privfed.threat.catalogue`) says what each protection guarantees, and the plan checker
(:mod:`privfed.threat.plan`) refuses any round whose protection does not meet the declaration.

Fields:

* ``server``: ``trusted`` (may see every update) or ``honest-but-curious`` (follows the protocol but tries to learn
  individual updates from what it receives). ``malicious`` parses, so that the refusal can say why: no protection in
  privfed defends against a server that deviates from the protocol yet, and every plan is refused under it.
* ``collusion``: up to this many clients share everything they hold with the server.
* ``dropout``: the expected fraction of a round's clients that drop out at any phase, in [0, 1).
* ``server_may_see_aggregate``: whether the server may learn the round's aggregate (the model update). When false,
  only a protection that leaves the aggregate with the key-holding clients meets the model.
* ``epsilon`` / ``delta``: an (epsilon, delta) target for the released model, or none. ``delta`` defaults to 1e-5
  when an epsilon is given without one (choose delta well below 1 / number of users).
* ``dp_unit``: ``user`` (default; one client's whole data) or ``record`` (one training example). User-level DP
  implies record-level DP; record-level DP (DP-SGD inside clients) does not meet a user-level target.
* ``update_privacy``: what counts as hiding an individual update from a distrusted server: ``cryptographic``
  (default; the server never sees it, only an aggregate) or ``local-dp`` (the user also accepts an update that the
  client noised itself, so local DP and DP-SGD clients meet the model).

The compact form parsed by :meth:`ThreatModel.parse` is
``"server=honest-but-curious,collusion=2,dropout=0.1,epsilon=8,delta=1e-5"``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Mapping

from protocols.errors import ConfigError

__all__ = ["ThreatModel", "TRUSTED", "HONEST_BUT_CURIOUS", "MALICIOUS", "SERVER_MODELS", "DEFAULT_DELTA"]

TRUSTED = "trusted"
HONEST_BUT_CURIOUS = "honest-but-curious"
MALICIOUS = "malicious"
SERVER_MODELS: tuple[str, ...] = (TRUSTED, HONEST_BUT_CURIOUS, MALICIOUS)
DEFAULT_DELTA = 1e-5

_SERVER_ALIASES = {"trusted": TRUSTED, "honest": TRUSTED, "hbc": HONEST_BUT_CURIOUS,
                   "honest-but-curious": HONEST_BUT_CURIOUS, "semi-honest": HONEST_BUT_CURIOUS,
                   "curious": HONEST_BUT_CURIOUS, "malicious": MALICIOUS, "active": MALICIOUS}
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass(frozen=True)
class ThreatModel:
    """A declared adversary, validated at construction (see the module docstring for each field)."""

    server: str = HONEST_BUT_CURIOUS
    collusion: int = 0
    dropout: float = 0.0
    server_may_see_aggregate: bool = True
    epsilon: float | None = None
    delta: float | None = None
    dp_unit: str = "user"
    update_privacy: str = "cryptographic"

    #: accepted key spellings in the compact form and in ``[threat]`` config tables
    KEY_ALIASES: ClassVar[Mapping[str, str]] = {
        "server": "server", "collusion": "collusion", "colluders": "collusion", "dropout": "dropout",
        "server_may_see_aggregate": "server_may_see_aggregate", "see_aggregate": "server_may_see_aggregate",
        "aggregate": "server_may_see_aggregate", "epsilon": "epsilon", "eps": "epsilon", "delta": "delta",
        "dp_unit": "dp_unit", "update_privacy": "update_privacy",
    }

    def __post_init__(self) -> None:
        server = _SERVER_ALIASES.get(str(self.server).strip().lower())
        if server is None:
            raise ConfigError(f"threat: server must be one of {', '.join(SERVER_MODELS)}, got {self.server!r}")
        object.__setattr__(self, "server", server)
        if isinstance(self.collusion, bool) or not isinstance(self.collusion, int) or self.collusion < 0:
            raise ConfigError(f"threat: collusion must be a whole number of clients >= 0, got {self.collusion!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not math.isfinite(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"threat: dropout must be a fraction in [0, 1), got {self.dropout!r}")
        object.__setattr__(self, "dropout", float(self.dropout))
        if not isinstance(self.server_may_see_aggregate, bool):
            raise ConfigError("threat: server_may_see_aggregate must be true or false")
        if self.epsilon is not None:
            if isinstance(self.epsilon, bool) or not isinstance(self.epsilon, (int, float)) \
                    or not math.isfinite(self.epsilon) or self.epsilon <= 0:
                raise ConfigError(f"threat: epsilon must be a positive finite number, got {self.epsilon!r}")
            object.__setattr__(self, "epsilon", float(self.epsilon))
            if self.delta is None:
                object.__setattr__(self, "delta", DEFAULT_DELTA)
        if self.delta is not None:
            if self.epsilon is None:
                raise ConfigError("threat: delta without epsilon; give epsilon=E (and delta=D) for a DP target")
            if isinstance(self.delta, bool) or not isinstance(self.delta, (int, float)) \
                    or not 0.0 < float(self.delta) < 1.0:
                raise ConfigError(f"threat: delta must be in (0, 1), got {self.delta!r}")
            object.__setattr__(self, "delta", float(self.delta))
        if self.dp_unit not in ("user", "record"):
            raise ConfigError(f"threat: dp_unit must be 'user' or 'record', got {self.dp_unit!r}")
        if self.update_privacy not in ("cryptographic", "local-dp"):
            raise ConfigError(f"threat: update_privacy must be 'cryptographic' or 'local-dp', "
                              f"got {self.update_privacy!r}")

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def trusted(cls) -> "ThreatModel":
        """No adversary declared: the server is trusted and no DP target is set (every protection meets it)."""
        return cls(server=TRUSTED)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ThreatModel":
        """From a ``[threat]`` config table or parsed ``KEY=VALUE`` pairs (values may still be strings)."""
        kwargs: dict[str, Any] = {}
        for raw_key, raw_value in values.items():
            key = cls.KEY_ALIASES.get(str(raw_key).strip().lower().replace("-", "_"))
            if key is None:
                known = ", ".join(sorted(set(cls.KEY_ALIASES.values())))
                raise ConfigError(f"threat: unknown key {raw_key!r}; keys are {known}")
            if key in kwargs:
                raise ConfigError(f"threat: key {key!r} given twice")
            kwargs[key] = _coerce(key, raw_value)
        return cls(**kwargs)

    @classmethod
    def parse(cls, text: str) -> "ThreatModel":
        """``"server=honest-but-curious,collusion=2,dropout=0.1,epsilon=8,delta=1e-5"`` -> ThreatModel."""
        pairs: dict[str, str] = {}
        for part in str(text).split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ConfigError(f"threat: expected KEY=VALUE, got {part.strip()!r}")
            if key.strip() in pairs:
                raise ConfigError(f"threat: key {key.strip()!r} given twice")
            pairs[key.strip()] = value.strip()
        return cls.from_mapping(pairs)

    @classmethod
    def coerce(cls, value: "ThreatModel | Mapping[str, Any] | str | None") -> "ThreatModel":
        """Accept a ThreatModel, a mapping, the compact string, or None (= :meth:`trusted`)."""
        if value is None:
            return cls.trusted()
        if isinstance(value, ThreatModel):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        return cls.from_mapping(value)

    # -- views --------------------------------------------------------------------------------------------------

    @property
    def distrusts_server(self) -> bool:
        return self.server != TRUSTED

    @property
    def wants_dp(self) -> bool:
        return self.epsilon is not None

    def expected_dropouts(self, clients: int) -> int:
        """Clients expected to drop in a round of ``clients`` (rounded up: plan for the worse case)."""
        return math.ceil(self.dropout * clients - 1e-12)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for reports: ``server=honest-but-curious, collusion=2, dropout=0.1, epsilon=8 (delta=1e-05)``."""
        parts = [f"server={self.server}", f"collusion={self.collusion}", f"dropout={self.dropout:g}"]
        if not self.server_may_see_aggregate:
            parts.append("server may not see the aggregate")
        parts.append(f"epsilon={self.epsilon:g} (delta={self.delta:g}, {self.dp_unit}-level)" if self.wants_dp
                     else "no DP target")
        if self.update_privacy != "cryptographic":
            parts.append(f"update_privacy={self.update_privacy}")
        return ", ".join(parts)


def _coerce(key: str, value: Any) -> Any:
    """Strings from the compact form -> the field's type; anything else passes to validation unchanged."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if key == "collusion":
            return int(text)
        if key in ("dropout", "epsilon", "delta"):
            return None if text.lower() in ("none", "null", "") else float(text)
    except ValueError:
        raise ConfigError(f"threat: {key} must be a number, got {value!r}") from None
    if key == "server_may_see_aggregate":
        lowered = text.lower()
        if lowered in _TRUE or lowered == "server":
            return True
        if lowered in _FALSE or lowered in ("clients", "key-holders"):
            return False
        raise ConfigError(f"threat: {key} must be true or false, got {value!r}")
    return text
