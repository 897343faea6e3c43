"""A round that loses clients mid-way never hands a distrusted server a sum holding one honest input beside the
declared colluders' (that sum would be that input): SecAgg's ``min_survivors`` and HE's ``min_clients`` are set by the
FedAvg loop's one option source to collusion + 2, and the SecAgg server refuses to unmask fewer masked inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from protocols import registry
from protocols.base import BEFORE_UPLOAD, ClientUpdate
from protocols.errors import ConfigError
from privfed.experiment.fedavg import protection_options
from privfed.fl.config import load_config
from privfed.runtime.local import run_round


def _updates(n: int, dim: int = 40) -> dict[int, ClientUpdate]:
    rng = np.random.default_rng(7)  # data only
    return {c: ClientUpdate(rng.uniform(-1, 1, dim).astype(np.float32), float(rng.integers(1, 10))) for c in range(n)}


@settings(max_examples=15, deadline=None)
@given(n=st.integers(4, 9), collusion=st.integers(0, 3), dropped=st.integers(0, 6))
def test_secagg_never_unmasks_fewer_than_collusion_plus_two(n: int, collusion: int, dropped: int) -> None:
    config = load_config(None, [f"threat.server=honest-but-curious", f"threat.collusion={collusion}"])
    options = protection_options(config, "secagg", 10.0, n)
    assert options["min_survivors"] == collusion + 2
    t = max(2, min(n, collusion + 1))
    protocol = registry.create("secagg", {**options, "threshold": t})
    dropped = min(dropped, n - 1)
    report = run_round(protocol, 1, _updates(n), drops={c: BEFORE_UPLOAD for c in range(dropped)}, transcript=False)
    survivors = n - dropped
    if report.result is not None:
        assert len(report.result.survivors) >= collusion + 2 and len(report.result.survivors) == survivors
    else:
        assert survivors < max(t, collusion + 2)
        if survivors >= t:  # the threshold alone would have unmasked it: the floor is what stopped it
            assert "min_survivors" in report.aborted


def test_he_contribution_floor_and_a_trusted_server() -> None:
    config = load_config(None, ["threat.server=honest-but-curious", "threat.collusion=4"])
    assert protection_options(config, "paillier", 10.0, 10)["min_clients"] == 6
    assert protection_options(config, "ckks", 10.0, 10)["min_clients"] == 6
    raised = load_config(None, ["threat.server=honest-but-curious", "threat.collusion=1",
                                "protection.options.secagg.min_survivors=5"])
    assert protection_options(raised, "secagg", 10.0, 10)["min_survivors"] == 5  # a user may ask for more
    trusted = load_config(None, [])
    assert "min_survivors" not in protection_options(trusted, "secagg", 10.0, 10)
    assert "min_survivors" not in protection_options(config, "secagg+dp", 10.0, 10)  # its noise floor rules it
    for bad in (1, 0, True, 2.5):
        with pytest.raises(ConfigError, match="min_survivors"):
            registry.create("secagg", {"min_survivors": bad})
