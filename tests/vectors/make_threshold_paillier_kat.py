"""Regenerate threshold_paillier_kat.json (python tests/vectors/make_threshold_paillier_kat.py).

TEST-ONLY KEY: the safe primes, the shares and everything else in the JSON file are public by construction; never
use them for anything else. A 1024-bit n from two 512-bit safe primes is dealt to key holders 10, 11, 12, 13, 14
with threshold 3 (privfed's ``deal``); each case holds a plaintext m and c = phe's raw_encrypt(m) under the same n,
the partial decryptions c^(2 Δ s_i) of every holder with their proofs, and m again as phe's own decryption with the
full key (p, q), which the combined threshold decryption must reproduce for every 3-subset.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from phe import paillier

from protocols.threshold_paillier_keys import deal, partial_decrypt, prove, safe_prime

OUT = Path(__file__).with_name("threshold_paillier_kat.json")
HOLDERS = (10, 11, 12, 13, 14)
THRESHOLD = 3
CONTEXT = b"privfed/kat/threshold-paillier"


def main() -> None:
    while True:
        p, q = safe_prime(512), safe_prime(512)
        if p != q and (p * q).bit_length() == 1024:
            break
    dealt = deal(p, q, HOLDERS, THRESHOLD)
    public_key = paillier.PaillierPublicKey(p * q)
    private_key = paillier.PaillierPrivateKey(public_key, p, q)
    n = p * q
    plaintexts = [0, 1, 2, n - 1, secrets.randbelow(n), (1 << 1000) + 12345]
    ciphertexts = [public_key.raw_encrypt(m) for m in plaintexts]
    holders = {}
    for h, share in dealt.shares.items():
        partials = partial_decrypt(share, ciphertexts)
        holders[str(h)] = {"share": hex(share.share), "partials": [hex(x) for x in partials],
                           "proof": prove(share, ciphertexts, partials, CONTEXT).hex()}
    OUT.write_text(json.dumps({
        "note": "TEST-ONLY threshold Paillier key (privfed deal, phe encryption and decryption)",
        "p": hex(p), "q": hex(q), "n": hex(n), "threshold": THRESHOLD, "holders": list(HOLDERS),
        "v": hex(dealt.public.v), "verification_keys": [hex(k) for k in dealt.public.verification_keys],
        "context": CONTEXT.hex(), "ciphertexts": [hex(c) for c in ciphertexts],
        "phe_decryptions": [hex(private_key.raw_decrypt(c)) for c in ciphertexts],
        "key_holders": holders}, indent=1) + "\n")


if __name__ == "__main__":
    main()
