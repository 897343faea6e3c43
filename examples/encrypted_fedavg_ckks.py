"""Encrypted FedAvg aggregation with CKKS, step by step: who holds which key, what the server sees, what it costs.

    python examples/encrypted_fedavg_ckks.py

Five clients hold a flat update (think: the LSTM's parameters flattened) and a sample count. A key authority
creates the TenSEAL context and gives the secret key to the clients only; the server gets a public context. Each
client encrypts [w' x, w'] (w' = samples / max_weight) in ceil((dim + 1) / 2048) ciphertexts; the server adds them
as they arrive and asks one surviving key holder to decrypt the sum, whose decryption is then handed to the server
(release="server", named in the result). One client drops out after uploading: the round still completes.
"""

from __future__ import annotations

import numpy as np
import tenseal as ts

from protocols.base import ClientUpdate
from protocols.ckks import CKKSProtocol
from privfed.runtime.local import run_round


def main() -> None:
    rng = np.random.default_rng(0)  # example data only; every key and noise sample comes from the OS
    dim = 10_000
    updates = {cid: ClientUpdate(rng.normal(0, 0.05, dim).astype(np.float32), float(rng.integers(50, 500)))
               for cid in range(5)}
    protocol = CKKSProtocol(max_weight=1000.0, clip=1.0)  # parameter set n4096: N=4096, moduli [50, 59]
    print("parameters:", dict(protocol.describe()))

    report = run_round(protocol, 1, updates, drops={3: "after-upload"}, record_server_view=True)
    result = report.result
    weights = np.array([updates[c].weight for c in result.survivors])
    exact = weights @ np.stack([updates[c].vector.astype(np.float64) for c in result.survivors]) / weights.sum()

    server_context = ts.context_from(protocol.key_authority().public_material)
    print(f"server context holds a secret key: {server_context.is_private()}")
    print(f"survivors {result.survivors}, decrypted by key holder {result.info['decrypted_by']}, "
          f"learned by: {result.learned_by}")
    print(f"max |error| {np.max(np.abs(result.mean - exact)):.2e} (declared bound {result.error_bound:.2e})")
    summary = report.summary()
    print(f"upload per client {summary['upload_bytes_per_client']:,.0f} B = "
          f"{summary['upload_bytes_per_client'] / (4 * dim):.2f}x float32; by phase {summary['upload_bytes_by_phase']}")
    print(f"client s {summary['client_seconds']:.3f}, server s {summary['server_seconds']:.3f}")
    print("note:", result.info["ind_cpa_d"])


if __name__ == "__main__":
    main()
