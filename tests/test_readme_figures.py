"""README's comparison table is the rendering of the committed compare.json, never hand-edited figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _renderer():
    spec = importlib.util.spec_from_file_location("readme_compare", ROOT / "benchmarks" / "readme_compare.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_readme_compare_table_is_rendered_from_the_committed_run() -> None:
    module = _renderer()
    payload = json.loads(module.RESULTS.read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(module.BEGIN) + len(module.BEGIN):readme.index(module.END)]
    assert block.strip() == module.render(payload).strip()
    protections = {r["protection"] for r in payload["rows"]}
    assert {"plaintext", "dp", "secagg", "secagg+dp", "local-dp", "dp-sgd", "ckks", "paillier"} <= protections
    spent = [r["epsilon"] for r in payload["rows"] if r["protection"] in ("dp", "secagg+dp")]
    assert all(isinstance(e, float) and e <= payload["meta"]["target_epsilon"] for e in spent)
