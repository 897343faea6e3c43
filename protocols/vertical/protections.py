"""The cut-layer protections of vertical FL and what each hides from whom (the catalogue rows; the one source).

Threat model (all rows): parties are honest-but-curious and follow the protocol; the transport is authenticated
(who sent a message is known). PSI reveals the intersection and the set sizes to the label party and the
feature parties (see :mod:`protocols.psi`). Nothing here hides *which* entities are shared, or protects a party's
model from the outputs it releases; model inversion from embeddings (``concat``) and label inference from exact
gradients (``plaintext``, ``secure-sum``; Li et al., "Label leakage and protection in two-party split learning",
ICLR 2022) are the known attacks the options below answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["CutLayerProtection", "PROTECTIONS", "get", "names", "table"]


@dataclass(frozen=True)
class CutLayerProtection:
    name: str
    combine: str           # "concat": the label party sees each embedding; "sum": only their secure sum
    label_dp: bool         # cut-layer gradients (and the label party's own training) are DP-noised
    label_party_sees: str
    feature_parties_see: str
    assumptions: str
    min_feature_parties: int = 1


PROTECTIONS: dict[str, CutLayerProtection] = {p.name: p for p in (
    CutLayerProtection(
        "plaintext", "concat", False,
        "every feature party's embedding of every aligned entity it asks for",
        "exact gradients of the loss w.r.t. their embeddings: labels leak (norm/direction attacks)",
        "none beyond honest-but-curious parties"),
    CutLayerProtection(
        "label-dp", "concat", True,
        "every feature party's embedding of every aligned entity it asks for",
        "clipped, Gaussian-noised per-example gradients: each training label is (epsilon, delta)-DP "
        "(replace-one-label), epsilon accounted by protocols.dp.accounting",
        "noise drawn from an OS-keyed CSPRNG and kept secret by the label party"),
    CutLayerProtection(
        "secure-sum", "sum", False,
        "only the sum of the feature parties' embeddings per entity (SecAgg), never one party's embedding",
        "exact gradients w.r.t. the sum (the same for every feature party): labels leak",
        "SecAgg's: label party as an honest-but-curious server, fewer colluders than its threshold; "
        "a party's embedding is exposed if all other feature parties collude with the label party",
        min_feature_parties=2),
    CutLayerProtection(
        "secure-sum+label-dp", "sum", True,
        "only the sum of the feature parties' embeddings per entity (SecAgg)",
        "clipped, noised gradients w.r.t. the sum: labels are (epsilon, delta)-DP",
        "both of the above", min_feature_parties=2),
)}


def names() -> list[str]:
    return list(PROTECTIONS)


def get(name: str) -> CutLayerProtection:
    try:
        return PROTECTIONS[name]
    except KeyError:
        raise ConfigError(f"unknown cut-layer protection {name!r}; choose from {', '.join(PROTECTIONS)}") from None


def table() -> list[dict[str, object]]:
    """The catalogue as rows of plain values (for reports and the threat catalogue)."""
    return [{"protection": p.name, "combine": p.combine, "label_dp": p.label_dp,
             "label_party_sees": p.label_party_sees, "feature_parties_see": p.feature_parties_see,
             "assumptions": p.assumptions, "min_feature_parties": p.min_feature_parties}
            for p in PROTECTIONS.values()]
