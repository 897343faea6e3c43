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


__all__ = ["DealtCKKSAuthority", "deal", "load_authority", "needs_dealer", "DEALT_PROTECTIONS", "SECRET", "PUBLIC",
           "META"]

SECRET, PUBLIC, META = "ckks.secret", "ckks.public", "ckks.json"
#: protections whose clients hold keys from a key authority, dealt ahead of a Flower run
DEALT_PROTECTIONS = ("ckks", "ckks+dp")


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


def deal(directory: str | Path, protection: str = "ckks", options: Mapping[str, Any] | None = None
         ) -> tuple[Path, Path]:
    """Make one CKKS key pair and write ``DIR/nodes`` (secret) and ``DIR/server`` (public); returns both paths.
    ``options`` may choose the ``parameter_set`` (default n4096); the keys serve ckks and ckks+dp alike."""
    if not needs_dealer(protection):
        raise ConfigError(f"{protection!r} needs no dealt keys")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m privfed.runtime.flower.keys",
                                     description="Deal CKKS keys for a Flower deployment (see module docstring).")
    parser.add_argument("directory")
    parser.add_argument("--protection", default="ckks")
    parser.add_argument("--options", default="{}", help="protocol options as JSON (e.g. parameter_set)")
    args = parser.parse_args(argv)
    nodes, server = deal(args.directory, args.protection, json.loads(args.options))
    print(f"node keys (secret, copy to every node; node-config key-dir): {nodes}")
    print(f"server keys (public only; run-config key-dir): {server}")


if __name__ == "__main__":
    main()
