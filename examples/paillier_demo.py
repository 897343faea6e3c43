"""Packed Paillier in three views: the packing, a known answer with phe's own key, and a full round.

    python examples/paillier_demo.py

1. Packing: 24-bit slots, ~85 per 2048-bit plaintext, with headroom for the round's clients and an offset for sign.
2. A privfed ciphertext decrypted by phe's own PaillierPrivateKey (the dealer's), to show interoperability.
3. A round of 4 clients (one drops before upload): the server multiplies ciphertexts mod n^2, one key holder
   decrypts the packed sums, the server unpacks; error within the reported bound. Per-value Paillier, the
   textbook baseline, is run on 20 values for comparison of bytes.
"""

from __future__ import annotations

import time

import numpy as np

from protocols.base import ClientUpdate
from protocols.csprng import CSPRNG
from protocols.paillier import PackedPaillierProtocol, PerValuePaillierProtocol
from protocols.paillier_keys import PaillierAuthority
from privfed.runtime.local import run_round


def main() -> None:
    started = time.perf_counter()
    authority = PaillierAuthority(2048)  # the dealer: one key pair per run
    print(f"key generated in {time.perf_counter() - started:.1f} s; server holds n only "
          f"({len(authority.public_material)} bytes of public material)")
    protocol = PackedPaillierProtocol(authority=authority, max_weight=100.0)

    packing = protocol.packing(2047, max_clients=4)
    print(f"packing: {packing.slots} slots x {packing.slot_bits} bits, frac_bits {packing.fixed.frac_bits}, "
          f"offset {packing.offset}")
    values = np.array([0.5, -0.25, 1.0, -1.0])
    slots = packing.encode(values, CSPRNG.from_os())
    (plaintext,) = packing.pack(slots)
    keys = authority.client_bundle()
    ciphertext = keys.encrypt_raw(plaintext, keys.nth_residues(1)[0])
    decrypted = authority.phe_private_key().raw_decrypt(ciphertext)  # phe's own decryption
    back = packing.fixed.dequantize(packing.unpack([decrypted], 4).astype(np.int64) - packing.offset)
    print(f"phe decrypts privfed's ciphertext: {decrypted == plaintext}; values back: {back}")

    rng = np.random.default_rng(1)  # example data only
    updates = {c: ClientUpdate(rng.uniform(-1, 1, 5000).astype(np.float32), float(rng.integers(1, 101)))
               for c in range(4)}
    report = run_round(protocol, 1, updates, drops={2: "before-upload"})
    result = report.result
    w = np.array([updates[c].weight for c in result.survivors])
    exact = w @ np.stack([updates[c].vector.astype(np.float64) for c in result.survivors]) / w.sum()
    summary = report.summary()
    print(f"packed round: survivors {result.survivors}, max |error| {np.max(np.abs(result.mean - exact)):.2e} "
          f"<= bound {result.error_bound:.2e}; upload {summary['upload_bytes_per_client'] / (4 * 5000):.2f}x "
          f"float32; client s {summary['client_seconds']:.2f} (online part "
          f"{result.info['client_online_seconds_mean']:.3f} s, "
          f"r^n pool {result.info['client_precompute_seconds_mean']:.2f} s)")

    small = {c: ClientUpdate(u.vector[:20].copy(), u.weight) for c, u in updates.items()}
    baseline = run_round(PerValuePaillierProtocol(authority=authority, max_weight=100.0), 1, small)
    print(f"per-value baseline on 20 values: upload {baseline.summary()['upload_bytes_per_client'] / 80:.0f}x "
          f"float32, client s {baseline.summary()['client_seconds']:.2f}")


if __name__ == "__main__":
    main()
