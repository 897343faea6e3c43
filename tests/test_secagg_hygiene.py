"""Hygiene of the whole protocols/ package (the audit surface) and of the SecAgg modules in particular.

* no non-cryptographic generator anywhere in protocols/: no ``random`` module, no ``numpy.random``, no torch;
* protocols/ never imports ``privfed`` or ``torch`` (checked statically and in a fresh interpreter);
* every SecAgg / Shamir module docstring opens with its threat model;
* exceptions and reprs of SecAgg parties never carry secrets.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import protocols
from protocols.errors import PrivfedError

ROOT = Path(protocols.__file__).parent
SOURCES = sorted(ROOT.rglob("*.py"))
SECAGG_MODULES = [ROOT / "shamir.py", *sorted((ROOT / "secagg").glob("*.py"))]
FORBIDDEN_MODULES = ("random", "numpy.random", "torch", "privfed")
FORBIDDEN_NAMES = {"default_rng", "RandomState", "SeedSequence", "PCG64", "MT19937", "Philox", "SFC64"}


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if any(alias.name == m or alias.name.startswith(m + ".") for m in FORBIDDEN_MODULES):
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if any(node.module == m or node.module.startswith(m + ".") for m in FORBIDDEN_MODULES):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            if node.module == "numpy" and any(a.name == "random" for a in node.names):
                found.append(f"line {node.lineno}: from numpy import random")
        elif isinstance(node, ast.Attribute) and node.attr == "random":
            if isinstance(node.value, ast.Name) and node.value.id in ("np", "numpy"):
                found.append(f"line {node.lineno}: {node.value.id}.random")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(f"line {node.lineno}: {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_NAMES:
            found.append(f"line {node.lineno}: .{node.attr}")
    return found


def test_sources_found():
    assert len(SOURCES) >= 10 and ROOT / "secagg" / "masking.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_non_cryptographic_generators_and_no_upward_imports(path):
    assert _violations(path) == []


def test_lint_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import random\nimport numpy as np\nfrom numpy.random import default_rng\n"
                   "x = np.random.rand(3)\nimport torch\nfrom privfed.cli import bench\n")
    assert len(_violations(bad)) >= 5


def test_fresh_interpreter_imports_protocols_without_torch_or_privfed():
    code = ("import sys, protocols.secagg, protocols.shamir, protocols.secagg.server, protocols.secagg.client; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'privfed')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT.parent)


@pytest.mark.parametrize("path", SECAGG_MODULES, ids=lambda p: p.name)
def test_module_docstring_opens_with_threat_model(path):
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc, f"{path.name} has no docstring"
    paragraphs = [p for p in doc.split("\n\n") if p.strip()]
    assert paragraphs[1].startswith("Threat model:"), f"{path.name}: the paragraph after the title must be the threat model"


def test_failures_and_reprs_never_carry_secrets():
    """Drive rounds into many failure paths and check no secret bytes (hex or decimal) appear in any text."""
    from protocols.secagg import SecAggProtocol
    from protocols.secagg.messages import MASK_REQUEST
    from test_secagg_support import Driver, rewrite, server_request, updates

    drv = Driver(SecAggProtocol(max_weight=10.0, threshold=3), updates(4, 8))
    drv.run_to("masked-input")
    client = drv.clients[0]
    secrets_ = [client._seed, client._s_key.private_bytes_raw(), client._c_key.private_bytes_raw(),
                *client._recv_key.values()]
    shares = [client._own_b_share]
    texts = [repr(client), repr(drv.server), repr(shares[0])]
    msg = MASK_REQUEST
    for bad in (
        rewrite(drv.outgoing.messages[0], msg, 1, ciphertexts=[b"\x00" * 172] * 3),
        rewrite(drv.outgoing.messages[0], msg, 1, senders=np.asarray([1, 1, 2], dtype=np.int64)),
        server_request("unmask-request", 1, {"alive": np.asarray([0], dtype=np.int64),
                                             "dropped": np.asarray([0], dtype=np.int64)}),
    ):
        fresh = Driver(SecAggProtocol(max_weight=10.0, threshold=3), updates(4, 8))
        fresh.run_to("masked-input")
        for target in (client, fresh.clients[0]):
            try:
                target.handle(bad)
            except PrivfedError as exc:
                texts.append(str(exc))
                texts.append(repr(exc))
    assert len(texts) > 4
    blob = "\n".join(texts)
    for secret in secrets_:
        assert secret.hex() not in blob and str(int.from_bytes(secret, "big")) not in blob
    for share in shares:
        assert str(share.value) not in blob and hex(share.value)[2:] not in blob
