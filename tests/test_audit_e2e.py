"""End to end: a 10-round FedAvg run under a mixed plan (CKKS, distributed DP over SecAgg, packed Paillier), audited.

The audit must show per round the protection, bytes per party, error against plaintext and cumulative epsilon; and
a scan of the whole run directory for secret keys, seeds and shares must find none. To know what to look for, the
test records every secret the protocols create while the run goes on (OS randomness, CSPRNG keys, X25519 private
keys and shared secrets, HKDF outputs, Shamir shares, Paillier's private primes), then searches every file for each
of them in every encoding the scanner knows, plus private TenSEAL contexts and PEM keys.

Needs HE, SecAgg, DP and the FedAvg loop: skipped while any of them is missing.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

PLAN = "1-3:ckks,4-7:secagg+dp,8-10:paillier"
ROUNDS = 10
CLIENTS = 5
THREAT = {"server": "honest-but-curious", "collusion": 0, "dropout": 0.0}


def _require(name: str) -> None:
    from protocols import registry
    from protocols.errors import ConfigError

    try:
        registry.create(name, {"max_weight": 1.0, "clip": 1.0, **OPTIONS.get(name, {})})
    except (ConfigError, ImportError, NotImplementedError, AttributeError) as exc:
        pytest.skip(f"protection {name!r} is not available yet: {exc!r}")


OPTIONS: dict[str, dict[str, Any]] = {"secagg+dp": {"expected_clients": CLIENTS, "noise_multiplier": 1.0}}


class SecretRecorder:
    """Wraps the places where secrets are born and keeps a copy of each (test process only)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.values: list[bytes | int] = []
        self._mp = monkeypatch

    def _wrap(self, owner: Any, attribute: str, take: Callable[[tuple, dict, Any], None]) -> None:
        original = getattr(owner, attribute)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            take(args, kwargs, result)
            return result

        self._mp.setattr(owner, attribute, wrapper)

    def add(self, value: Any) -> None:
        if isinstance(value, (bytes, bytearray)) and len(value) >= 16:
            self.values.append(bytes(value))
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() >= 64:
            self.values.append(value)

    def install(self) -> None:
        self._wrap(os, "urandom", lambda a, k, r: self.add(r))
        csprng = importlib.import_module("protocols.csprng")
        self._wrap(csprng.CSPRNG, "from_key", lambda a, k, r: self.add(a[0] if a else k.get("key")))
        original_init = csprng.CSPRNG.__init__

        def init(this: Any, key: bytes, nonce: bytes = bytes(16)) -> None:
            self.add(key)
            original_init(this, key, nonce)

        self._mp.setattr(csprng.CSPRNG, "__init__", init)
        shamir = importlib.import_module("protocols.shamir")

        def shares(a: tuple, k: dict, result: Any) -> None:
            for share in result:
                self.add(share.to_bytes())
                self.add(getattr(share, "y", None))
        self._wrap(shamir, "split", shares)
        self._wrap(shamir, "split_with_coefficients", shares)
        keys = importlib.import_module("protocols.secagg.keys")
        self._wrap(keys, "generate_private_key", lambda a, k, r: self.add(keys.private_bytes(r)))
        self._wrap(keys, "agree", lambda a, k, r: self.add(r))
        self._wrap(keys, "derive", lambda a, k, r: self.add(r))
        paillier_keys = importlib.import_module("protocols.paillier_keys")
        original_keys = paillier_keys.ClientKeys.__init__

        def client_keys(this: Any, n: int, p: int, q: int) -> None:
            self.add(p)
            self.add(q)
            original_keys(this, n, p, q)

        self._mp.setattr(paillier_keys.ClientKeys, "__init__", client_keys)
        try:
            ts = importlib.import_module("tenseal")
        except ImportError:
            return
        original_context = ts.context

        def context(*args: Any, **kwargs: Any) -> Any:
            ctx = original_context(*args, **kwargs)
            try:
                self.add(ctx.serialize(save_secret_key=True))
            except Exception:  # noqa: BLE001 - a public context has no secret key to record
                pass
            return ctx

        self._mp.setattr(ts, "context", context)


@pytest.mark.slow
def test_mixed_plan_run_audit_and_secret_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tenseal")
    pytest.importorskip("phe")
    fedavg = pytest.importorskip("privfed.experiment.fedavg")
    config_module = pytest.importorskip("privfed.fl.config")
    for name in ("ckks", "secagg+dp", "paillier"):
        _require(name)
    from privfed.audit import build_report, scan_for_secrets

    recorder = SecretRecorder(monkeypatch)
    recorder.install()
    config = config_module.config_from_table({
        "plan": PLAN, "threat": THREAT,
        "fl": {"rounds": ROUNDS, "clients_per_round": CLIENTS},
        "model": {"hidden": 16, "embedding": 8},
        "train": {"max_batches": 2},
        "data": {"max_chars_per_client": 2000},
        "protection": {"options": OPTIONS},
    })
    run_dir = tmp_path / "run"
    result = fedavg.run_fedavg(config, run_dir)
    assert result.summary["status"] == "complete"
    assert len(recorder.values) > 100  # the hooks saw the protocols' secrets

    report = build_report(run_dir, scan=False)
    assert [r.protection for r in report.rounds] == ["ckks"] * 3 + ["secagg+dp"] * 4 + ["paillier"] * 3
    for r in report.rounds:
        assert r.threat_ok, r.threat_check
        assert r.aborted is None and r.survivors == CLIENTS
        assert r.upload_bytes_per_client and r.upload_bytes_per_client > 0
        assert r.verifier_max_abs_error is not None and r.error_bound is not None
        parties = {v.party for v in r.received}
        assert "server" in parties and len(parties) == CLIENTS + 1
        if r.protection != "secagg+dp":  # exact up to encoding: within the declared bound
            assert r.verifier_max_abs_error <= r.error_bound + 1e-9
    eps = [r.epsilon for r in report.rounds]
    assert eps[:3] == [None] * 3 and all(e is not None for e in eps[3:])  # inf: rounds 1-3 had no noise
    markdown = report.to_markdown()
    for needle in ("| 1 | ckks |", "| 4 | secagg+dp |", "| 10 | paillier |", "cumulative epsilon",
                   "max abs error vs plaintext", "upload B/client"):
        assert needle in markdown
    (tmp_path / "audit.md").write_text(markdown)

    findings = scan_for_secrets(run_dir, recorder.values)
    assert findings == [], "\n".join(map(str, findings[:20]))

    # control: the recorded values are what the scanner looks for (a planted one is found)
    planted = next(v for v in recorder.values if isinstance(v, bytes))
    (run_dir / "planted.json").write_text(json.dumps({"note": base64.b64encode(b"::" + planted).decode()}))
    assert {f.path for f in scan_for_secrets(run_dir, recorder.values)} == {"planted.json"}
