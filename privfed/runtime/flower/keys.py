"""The HE key authority (dealer) of a Flower deployment: keys dealt to files before the run, loaded by each party.

In-process, the CKKS key authority lives on the protocol object that server and clients share
(:mod:`protocols.keyauthority`). Across machines there is no shared object, so the dealer runs once, ahead of the
run, on a machine the aggregating server cannot read, and writes two directories:

* ``nodes/`` — ``ckks.secret`` (the TenSEAL context **with** the secret key), ``ckks.public`` and ``ckks.json``
  (scheme, parameter set, key id; the same keys serve ``ckks`` and ``ckks+dp``). Copy it to every node (out of band, like enrolment) and point node-config ``key-dir``
  at it;
* ``server/`` — ``ckks.public`` and ``ckks.json`` only. Point the run-config ``key-dir`` at it.

Each party rebuilds a :class:`DealtCKKSAuthority` from its files and passes it as the protocol's ``authority``
option, so key ids match and the server's protocol object never holds a secret key (a public context with a secret
key, or a missing secret on a node, is refused). Usage::

    python -m privfed.runtime.flower.keys DIR [--options '{"parameter_set": "n4096"}']
    python -m privfed.runtime.flower.keys DIR --protection paillier [--options '{"key_bits": 3072}']

Threat model: the same as :mod:`protocols.ckks` (shared client key: any key-holding client colluding with the
server decrypts everyone's updates). The files under ``nodes/`` are secrets: keep them off the SuperLink host.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Mapping

import tenseal as ts

from protocols.ckks import PARAMETER_SETS, CKKSAuthority, CKKSParameters
from protocols.errors import ConfigError


__all__ = ["DealtCKKSAuthority", "deal", "deal_options", "DEAL_OPTIONS", "load_authority", "load_paillier_authority", "needs_dealer",
           "DEALT_PROTECTIONS", "PAILLIER_PROTECTIONS", "SECRET", "PUBLIC", "META"]

SECRET, PUBLIC, META = "ckks.secret", "ckks.public", "ckks.json"
#: protections whose clients hold keys from a key authority, dealt ahead of a Flower run
#: protections whose keys come from a Paillier key authority (the dealt factors p, q go to the nodes only)
PAILLIER_PROTECTIONS = ("paillier", "paillier-per-value")
DEALT_PROTECTIONS = ("ckks", "ckks+dp", *PAILLIER_PROTECTIONS)
P_SECRET, P_META = "paillier.secret", "paillier.json"


def needs_dealer(protection: str) -> bool:
    """Whether this protection's clients hold keys from a key authority (HE), dealt ahead of a Flower run."""
    return protection in DEALT_PROTECTIONS


class DealtCKKSAuthority(CKKSAuthority):
    """A CKKS key authority rebuilt from dealt bytes (public material, and the secret context on nodes)."""

    def __init__(self, parameters: CKKSParameters, public: bytes, secret: bytes | None) -> None:
        # deliberately not CKKSAuthority.__init__, which would make a fresh key pair
        if ts.context_from(public).is_private():
            raise ConfigError("the dealt public context holds a secret key")
        if secret is not None and not ts.context_from(secret).is_private():
            raise ConfigError("the dealt secret context holds no secret key")
        self.parameters = parameters
        self._public, self._secret = bytes(public), secret  # the attributes CKKSAuthority's methods read

    def __reduce__(self) -> tuple:
        return (DealtCKKSAuthority, (self.parameters, self._public, self._secret))

    def client_bundle(self) -> Any:
        if self._secret is None:
            raise ConfigError("this party holds public key material only")
        return super().client_bundle()

    def __repr__(self) -> str:
        return f"DealtCKKSAuthority({self.parameters.name}, secret={'yes' if self._secret else 'no'})"


def _dealt_paillier_class() -> type:
    """DealtPaillierAuthority, built on first use (phe is GPL and optional: never imported by privfed's core)."""
    global _DEALT_PAILLIER
    if _DEALT_PAILLIER is not None:
        return _DEALT_PAILLIER
    from protocols.paillier_keys import PaillierAuthority, public_material, short_exponent_for

    class DealtPaillierAuthority(PaillierAuthority):
        """A Paillier key authority rebuilt from dealt numbers: the modulus n (public) and, on nodes, its factors."""

        def __init__(self, key_bits: int, n: int, factors: tuple[int, int] | None) -> None:
            # deliberately not PaillierAuthority.__init__, which would make a fresh key pair
            if n.bit_length() != key_bits:
                raise ConfigError(f"the dealt modulus has {n.bit_length()} bits, the run uses key_bits={key_bits}")
            if factors is not None and (factors[0] * factors[1] != n or min(factors) < 3):
                raise ConfigError("the dealt Paillier factors do not match the modulus")
            self.key_bits, self._n = key_bits, n
            self._p, self._q = factors if factors is not None else (None, None)
            self._public = public_material(n)
            self._short = short_exponent_for(n, self._p, self._q) if factors is not None else None

        def __reduce__(self) -> tuple:
            factors = (self._p, self._q) if self._p is not None else None
            return (_rebuild_paillier, (self.key_bits, self._n, factors))

        def client_bundle(self) -> Any:
            if self._p is None:
                raise ConfigError("this party holds public key material only")
            return super().client_bundle()

        def phe_private_key(self) -> Any:
            if self._p is None:
                raise ConfigError("this party holds public key material only")
            return super().phe_private_key()

        def __repr__(self) -> str:
            return f"DealtPaillierAuthority({self.key_bits}, secret={'yes' if self._p else 'no'})"

    _DEALT_PAILLIER = DealtPaillierAuthority
    return DealtPaillierAuthority


_DEALT_PAILLIER: type | None = None


def _rebuild_paillier(key_bits: int, n: int, factors: tuple[int, int] | None) -> Any:
    return _dealt_paillier_class()(key_bits, n, factors)


def _deal_paillier(root: Path, options: Mapping[str, Any]) -> tuple[Path, Path]:
    from protocols.paillier_keys import PaillierAuthority

    key_bits = int(options.get("key_bits", 2048))
    authority = PaillierAuthority(key_bits, insecure_test_keys=bool(options.get("insecure_test_keys", False)))
    private = authority.phe_private_key()
    meta = {"scheme": "paillier", "key_bits": key_bits, "n": format(private.public_key.n, "x"),
            "key_id": authority.key_id.hex()}
    nodes, server = root / "nodes", root / "server"
    for folder in (nodes, server):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / P_META).write_text(json.dumps(meta), encoding="utf-8")
    secret = nodes / P_SECRET
    secret.touch(mode=0o600)
    secret.write_text(json.dumps({"p": format(private.p, "x"), "q": format(private.q, "x")}), encoding="utf-8")
    secret.chmod(0o600)
    return nodes, server


def load_paillier_authority(key_dir: str | Path, *, secret: bool, key_bits: int = 2048) -> Any:
    """The dealt Paillier authority in ``key_dir`` (with the factors when ``secret``), for ``key_bits``."""
    folder = Path(key_dir)
    try:
        meta = json.loads((folder / P_META).read_text(encoding="utf-8"))
        factors = json.loads((folder / P_SECRET).read_text(encoding="utf-8")) if secret else None
        n = int(meta["n"], 16)
        pair = (int(factors["p"], 16), int(factors["q"], 16)) if factors is not None else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read dealt Paillier keys in {folder}: {exc}") from None
    if meta.get("scheme") != "paillier" or meta.get("key_bits") != key_bits:
        raise ConfigError(f"keys in {folder} are for {meta.get('scheme')}/{meta.get('key_bits')} bits, "
                          f"the run uses paillier/{key_bits}")
    authority = _dealt_paillier_class()(key_bits, n, pair)
    if authority.key_id.hex() != meta.get("key_id"):
        raise ConfigError(f"the modulus in {folder} does not match its key id")
    return authority


def deal(directory: str | Path, protection: str = "ckks", options: Mapping[str, Any] | None = None
         ) -> tuple[Path, Path]:
    """Make one key pair and write ``DIR/nodes`` (secret) and ``DIR/server`` (public); returns both paths.
    CKKS: ``options`` may choose the ``parameter_set`` (default n4096); the keys serve ckks and ckks+dp alike.
    Paillier: ``key_bits`` (default 2048); the keys serve paillier and paillier-per-value."""
    if not needs_dealer(protection):
        raise ConfigError(f"{protection!r} needs no dealt keys")
    if protection in PAILLIER_PROTECTIONS:
        return _deal_paillier(Path(directory), options or {})
    parameter_set = str((options or {}).get("parameter_set", "n4096"))
    if parameter_set not in PARAMETER_SETS:
        raise ConfigError(f"unknown CKKS parameter set {parameter_set!r}")
    authority = CKKSAuthority(PARAMETER_SETS[parameter_set])
    public = authority.public_material
    secret = authority.client_bundle().context.serialize(save_secret_key=True)
    meta = {"scheme": "ckks", "parameter_set": parameter_set, "key_id": authority.key_id.hex()}
    root = Path(directory)
    nodes, server = root / "nodes", root / "server"
    for folder, files in ((nodes, {SECRET: secret, PUBLIC: public}), (server, {PUBLIC: public})):
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        (folder / META).write_text(json.dumps(meta), encoding="utf-8")
    (nodes / SECRET).chmod(0o600)
    return nodes, server


def load_authority(key_dir: str | Path, *, secret: bool, parameter_set: str = "n4096") -> DealtCKKSAuthority:
    """The dealt CKKS authority in ``key_dir`` (with the secret context when ``secret``), for ``parameter_set``."""
    folder = Path(key_dir)
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        public = (folder / PUBLIC).read_bytes()
        secret_bytes = (folder / SECRET).read_bytes() if secret else None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read dealt keys in {folder}: {exc}") from None
    if meta.get("scheme") != "ckks" or meta.get("parameter_set") != parameter_set:
        raise ConfigError(f"keys in {folder} are for {meta.get('scheme')}/{meta.get('parameter_set')}, "
                          f"the run uses ckks/{parameter_set}")
    authority = DealtCKKSAuthority(PARAMETER_SETS[parameter_set], public, secret_bytes)
    if authority.key_id.hex() != meta.get("key_id"):
        raise ConfigError(f"the public context in {folder} does not match its key id")
    return authority


#: the options each kind of dealt key takes (anything else in --options is refused, not ignored)
DEAL_OPTIONS = {"ckks": ("parameter_set",), "paillier": ("key_bits", "insecure_test_keys")}


def deal_options(protection: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` validated for dealing ``protection``'s keys: CKKS takes ``parameter_set``, Paillier ``key_bits``
    (a multiple of 256, >= 2048 unless ``insecure_test_keys``). Raises ConfigError naming the offending option."""
    if not isinstance(options, Mapping):
        raise ConfigError("--options must be a JSON object")
    if not needs_dealer(protection):
        raise ConfigError(f"{protection!r} needs no dealt keys; dealt: {', '.join(DEALT_PROTECTIONS)}")
    allowed = DEAL_OPTIONS["paillier" if protection in PAILLIER_PROTECTIONS else "ckks"]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"--options {unknown[0]!r} does not apply to {protection} keys; they take "
                          f"{', '.join(allowed)}")
    out = dict(options)
    if "key_bits" in out:
        bits = out["key_bits"]
        if isinstance(bits, bool) or not isinstance(bits, int):
            raise ConfigError(f"key_bits must be an integer number of bits, got {bits!r}")
        from protocols.paillier_keys import check_key_bits

        check_key_bits(bits, bool(out.get("insecure_test_keys", False)))
    if "insecure_test_keys" in out and not isinstance(out["insecure_test_keys"], bool):
        raise ConfigError("insecure_test_keys must be true or false")
    if "parameter_set" in out and out["parameter_set"] not in PARAMETER_SETS:
        raise ConfigError(f"unknown CKKS parameter set {out['parameter_set']!r}; known: {', '.join(PARAMETER_SETS)}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m privfed.runtime.flower.keys",
                                     description="Deal CKKS or Paillier keys for a Flower deployment (see module docstring).")
    parser.add_argument("directory")
    parser.add_argument("--protection", default="ckks", help=f"one of {', '.join(DEALT_PROTECTIONS)} (default ckks)")
    parser.add_argument("--options", default="{}",
                        help='key options as JSON: CKKS {"parameter_set": "n4096"} (default n4096); Paillier '
                             '{"key_bits": 3072} (default 2048; the run must give the protection the same '
                             'key_bits option)')
    args = parser.parse_args(argv)
    try:
        options = deal_options(args.protection, json.loads(args.options))
        nodes, server = deal(args.directory, args.protection, options)
    except json.JSONDecodeError as exc:
        parser.error(f"--options is not JSON: {exc}")
    except ConfigError as exc:
        parser.error(str(exc))
    print(f"node keys (secret, copy to every node; node-config key-dir): {nodes}")
    print(f"server keys (public only; run-config key-dir): {server}")
    if args.protection in PAILLIER_PROTECTIONS:
        print(f"Paillier modulus of {options.get('key_bits', 2048)} bits: give the run the same "
              f"key_bits option (protection.options.{args.protection}.key_bits)")


if __name__ == "__main__":
    main()
