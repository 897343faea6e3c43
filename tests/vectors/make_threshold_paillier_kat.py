"""Regenerate threshold_paillier_kat.json (python tests/vectors/make_threshold_paillier_kat.py).

TEST-ONLY KEY: the safe primes, the shares and everything else in the JSON file are public by construction; never
use them for anything else. A 1024-bit n from two 512-bit safe primes is dealt to key holders 10, 11, 12, 13, 14
with threshold 3 (privfed's ``deal``); each case holds a plaintext m and c = phe's raw_encrypt(m) under the same n,
the partial decryptions c^(2 Δ s_i) of every holder with their proofs, and m again as phe's own decryption with the
full key (p, q), which the combined threshold decryption must reproduce for every 3-subset. ``residue_cases`` hold
encryption randomness r^n = U^b H^x computed with plain ``pow`` (the fast fixed-base path must reproduce it) and an
encryption c of m under it (phe's full-key decryption must give m).
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
    # r^n = U^b H^x with U = u^n, H = h^n (u the smallest integer of Jacobi symbol -1), by plain pow()
    u = next(k for k in range(2, 1000) if _jacobi(k, n) == -1)
    residue_cases = []
    bits = 1024 + 128
    cases = ((0, 0), (1, 0), (0, 1), (1, (1 << bits) - 1), (0, secrets.randbits(bits)), (1, secrets.randbits(bits)))
    for b, x in cases:
        rn = pow(u, n * b, n * n) * pow(dealt.public.h, n * x, n * n) % (n * n)
        residue_cases.append({"b": b, "x": hex(x), "rn": hex(rn), "m": hex(x % n),
                              "c": hex((1 + (x % n) * n) * rn % (n * n))})
    holders = {}
    for h, share in dealt.shares.items():
        partials = partial_decrypt(share, ciphertexts)
        holders[str(h)] = {"share": hex(share.share), "partials": [hex(x) for x in partials],
                           "proof": prove(share, ciphertexts, partials, CONTEXT).hex()}
    OUT.write_text(json.dumps({
        "note": "TEST-ONLY threshold Paillier key (privfed deal, phe encryption and decryption)",
        "p": hex(p), "q": hex(q), "n": hex(n), "threshold": THRESHOLD, "holders": list(HOLDERS),
        "v": hex(dealt.public.v), "h": hex(dealt.public.h), "residue_cases": residue_cases,
        "verification_keys": [hex(k) for k in dealt.public.verification_keys],
        "context": CONTEXT.hex(), "ciphertexts": [hex(c) for c in ciphertexts],
        "phe_decryptions": [hex(private_key.raw_decrypt(c)) for c in ciphertexts],
        "key_holders": holders}, indent=1) + "\n")


def _jacobi(a: int, n: int) -> int:
    """The Jacobi symbol by the textbook algorithm (independent of gmpy2)."""
    a, result = a % n, 1
    while a:
        while a % 2 == 0:
            a //= 2
            if n % 8 in (3, 5):
                result = -result
        a, n = n, a
        if a % 4 == 3 and n % 4 == 3:
            result = -result
        a %= n
    return result if n == 1 else 0


if __name__ == "__main__":
    main()
