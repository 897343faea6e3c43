"""README's comparison table is the rendering of the committed compare.json, never hand-edited figures."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _renderer(name: str = "readme_compare"):
    """A README renderer of benchmarks/ (not a package) loaded by path."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _readme_block(module) -> str:
    """README's text between the renderer's markers."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return readme[readme.index(module.BEGIN) + len(module.BEGIN):readme.index(module.END)]


def test_readme_compare_table_is_rendered_from_the_committed_run() -> None:
    module = _renderer()
    payload = json.loads(module.RESULTS.read_text(encoding="utf-8"))
    assert _readme_block(module).strip() == module.render(payload).strip()
    protections = {r["protection"] for r in payload["rows"]}
    assert {"plaintext", "dp", "secagg", "secagg+dp", "local-dp", "dp-sgd", "ckks", "paillier"} <= protections
    spent = [r["epsilon"] for r in payload["rows"] if r["protection"] in ("dp", "secagg+dp")]
    assert all(isinstance(e, float) and e <= payload["meta"]["target_epsilon"] for e in spent)


def test_readme_peer_table_is_rendered_from_the_committed_run() -> None:
    module = _renderer("readme_peers")
    payload = module.load()
    assert _readme_block(module).strip() == module.render(payload).strip()
    sizes = {(r["clients"], r["params"]) for r in payload["rows"]}
    assert {(10, 100_000), (20, 100_000), (10, 1_000_000)} <= sizes
    # the markdown table of the same run says the same
    table = (ROOT / "benchmarks" / "results" / "peers.md").read_text(encoding="utf-8")
    for row in payload["rows"]:
        assert f"| {row['seconds']:.3f} | {row['cpu']:.3f} |" in table
