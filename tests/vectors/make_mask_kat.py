"""Regenerate secagg_mask_kat.json: SecAgg mask words computed from the mask's definition with AES-ECB alone
(python tests/vectors/make_mask_kat.py), independently of protocols/secagg/masking.py.

Definition (protocols/secagg/masking.py): the keystream under a 256-bit key is cut into segments of 2^20 bytes;
16-byte block j of segment s is AES-256-ECB_k(s as 12 big-endian bytes || j + 2 as 4 big-endian bytes). Words are
little-endian 4- or 8-byte integers of that byte stream. Each case lists word indices (around the first segment
boundary too) and the words there.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

OUT = Path(__file__).with_name("secagg_mask_kat.json")
SEGMENT_BYTES = 1 << 20


def keystream_bytes(key: bytes, start: int, length: int) -> bytes:
    """Bytes [start, start + length) of the keystream, block by block from the definition."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    out = bytearray()
    first, last = start // 16, (start + length - 1) // 16
    for block in range(first, last + 1):
        segment, j = divmod(block * 16, SEGMENT_BYTES)
        counter = segment.to_bytes(12, "big") + (j // 16 + 2).to_bytes(4, "big")
        out += ecb.update(counter)
    offset = start - first * 16
    return bytes(out[offset:offset + length])


def words(key: bytes, width: int, indices: list[int]) -> list[str]:
    return [keystream_bytes(key, i * width, width)[::-1].hex() for i in indices]


def main() -> None:
    cases = []
    keys = [bytes(32), bytes(range(32)), bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")]
    for key in keys:
        for width in (4, 8):
            per_segment = SEGMENT_BYTES // width
            indices = [0, 1, 2, 3, 4, 5, 6, 7, 100, per_segment - 2, per_segment - 1, per_segment, per_segment + 1,
                       3 * per_segment + 17]
            cases.append({"key": key.hex(), "word_bytes": width, "indices": indices,
                          "words_hex": words(key, width, indices)})
    description = ("SecAgg mask words from the definition, computed with AES-ECB alone (make_mask_kat.py): block j of "
                   "1 MiB segment s under key k is AES-256_k(s as 12 big-endian bytes || j + 2 as 4 big-endian "
                   "bytes); words are little-endian, hex big-endian. The zero key's first block is NIST GCM test "
                   "case 14's ciphertext cea7403d4d606b6e074ec5d3baf39d18.")
    OUT.write_text(json.dumps({"description": description, "segment_bytes": SEGMENT_BYTES,
                               "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
