"""ThreatModel: parsing the compact form and config tables, validation at construction."""

from __future__ import annotations

import pytest

from protocols.errors import ConfigError
from privfed.threat.model import DEFAULT_DELTA, ThreatModel


def test_parse_compact_form() -> None:
    t = ThreatModel.parse("server=honest-but-curious,collusion=2,dropout=0.1,epsilon=8,delta=1e-5")
    assert (t.server, t.collusion, t.dropout, t.epsilon, t.delta) == ("honest-but-curious", 2, 0.1, 8.0, 1e-5)
    assert t.server_may_see_aggregate and t.distrusts_server and t.wants_dp


def test_defaults_and_aliases() -> None:
    assert ThreatModel.parse("server=hbc").server == "honest-but-curious"
    assert ThreatModel.coerce(None).server == "trusted"
    assert ThreatModel.parse("epsilon=3").delta == DEFAULT_DELTA
    assert ThreatModel.from_mapping({"server": "trusted", "see_aggregate": False}).server_may_see_aggregate is False
    assert ThreatModel.coerce({"server": "honest-but-curious", "collusion": 1}).collusion == 1


@pytest.mark.parametrize("text, needle", [
    ("server=evil", "server must be one of"),
    ("collusion=-1", "collusion"),
    ("collusion=1.5", "collusion"),
    ("dropout=1.0", "dropout"),
    ("dropout=nan", "dropout"),
    ("epsilon=0", "epsilon"),
    ("epsilon=inf", "epsilon"),
    ("delta=1e-5", "delta without epsilon"),
    ("epsilon=1,delta=1", "delta"),
    ("colour=red", "unknown key"),
    ("server", "KEY=VALUE"),
    ("server=trusted,server=trusted", "twice"),
    ("server_may_see_aggregate=maybe", "true or false"),
    ("dp_unit=team", "dp_unit"),
])
def test_bad_threats_name_the_key(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        ThreatModel.parse(text)


def test_frozen_and_describe() -> None:
    t = ThreatModel.parse("server=hbc,collusion=1,epsilon=2")
    with pytest.raises(AttributeError):
        t.collusion = 3  # type: ignore[misc]
    assert "collusion=1" in t.describe() and "epsilon=2" in t.describe()
    assert t.expected_dropouts(10) == 0
    assert ThreatModel.parse("dropout=0.1").expected_dropouts(10) == 1
    assert ThreatModel.parse("dropout=0.11").expected_dropouts(10) == 2
