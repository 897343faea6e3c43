"""The threat layer phrases threshold Paillier's condition (computed in protocols.threshold_paillier)."""

from __future__ import annotations

from privfed.threat import catalogue
from privfed.threat.model import ThreatModel

OPTIONS = {"decryption": "threshold", "threshold": 4}


def _unmet(collusion: int, clients: int | None = 8, options=OPTIONS, dropout: float = 0.0) -> list[str]:
    threat = ThreatModel.coerce(f"server=honest-but-curious,collusion={collusion},dropout={dropout}")
    return catalogue.unmet_requirements("paillier", threat, catalogue.RoundContext(clients, options))


def test_threshold_paillier_tolerates_fewer_than_t_colluders() -> None:
    assert _unmet(3) == []
    assert any("T=4" in reason and "collusion=4" in reason for reason in _unmet(4))
    assert _unmet(3, clients=None) == [] and _unmet(4, clients=None)


def test_shared_key_paillier_still_refuses_any_collusion() -> None:
    assert _unmet(1, options={}) and _unmet(0, options={}) == []


def test_decrypt_dropouts_beyond_n_minus_t_are_refused() -> None:
    assert _unmet(0, dropout=0.5) == []           # 4 of 8 expected gone: 4 remain = T
    assert any("threshold 4" in r for r in _unmet(0, dropout=0.6))


def test_fractional_threshold_and_explanation() -> None:
    options = {"decryption": "threshold", "threshold": 0.5}
    assert _unmet(3, options=options) == [] and _unmet(4, options=options)
    threat = ThreatModel.coerce("server=honest-but-curious,collusion=3")
    text = catalogue.explain("paillier", threat, catalogue.RoundContext(8, OPTIONS))
    assert "up to 3 colluding key holders" in text and "T=4 of 8" in text


def test_key_holders_option_resolves_t_against_the_federation() -> None:
    options = {"decryption": "threshold", "threshold": 0.5, "key_holders": 20}  # T = 10
    assert _unmet(9, clients=20, options=options) == []
    assert any("only 8 key holders" in r for r in _unmet(0, clients=8, options=options))  # a round of 8 < T
