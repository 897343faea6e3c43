"""protocols/ is the torch-free audit surface: importing it must not pull in torch or privfed."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_import_protocols_pulls_in_neither_torch_nor_privfed() -> None:
    code = (
        "import sys, importlib, pkgutil, protocols\n"
        "for m in pkgutil.walk_packages(protocols.__path__, 'protocols.'):\n"
        "    try: importlib.import_module(m.name)\n"
        "    except ModuleNotFoundError as e:\n"
        "        if e.name.split('.')[0] in ('tenseal', 'phe', 'gmpy2', 'dp_accounting'): continue\n"
        "        raise\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'privfed', 'opacus'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_protocols_source_never_imports_torch_or_privfed() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+(torch|privfed|opacus)\b", re.M)
    offenders = [str(p) for p in (ROOT / "protocols").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_core_imports_without_gpl_phe() -> None:
    """phe is GPL-3.0: privfed's core and CLI must import with phe blocked."""
    if importlib.util.find_spec("protocols.paillier") is None:
        pytest.skip("protocols.paillier not built yet")
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'phe': raise ModuleNotFoundError(\"No module named 'phe'\", name='phe')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import protocols, protocols.plaintext, privfed.runtime.local, privfed.bench.aggregation, privfed.cli\n"
        "from protocols import registry\n"
        "try:\n"
        "    registry.create('paillier')\n"
        "except protocols.ConfigError as e:\n"
        "    assert 'phe' in str(e), e\n"
        "    print('clear error:', e)\n"
        "else:\n"
        "    raise SystemExit('paillier must need phe')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_fl_is_machine_learning_only() -> None:
    """privfed/fl/ imports none of the layers above it (threat, runtime, experiment, bench, audit, cli, apps)."""
    pattern = re.compile(r"^\s*(from|import)\s+privfed\.(threat|runtime|experiment|bench|audit|cli|apps)\b", re.M)
    offenders = [str(p) for p in (ROOT / "privfed" / "fl").rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    code = ("import sys, privfed.fl, privfed.fl.train, privfed.fl.dpsgd\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[:2] in (['privfed', 'threat'], ['privfed', 'runtime'],"
            " ['privfed', 'experiment']))\nprint(bad); sys.exit(1 if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
