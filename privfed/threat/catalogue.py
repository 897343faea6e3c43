"""What each protection guarantees: what it hides, from whom, under which assumptions, and when it holds for a round.

(Vertical FL's cut-layer protections have their own table: :mod:`protocols.vertical.protections`, ``privfed vertical
--catalogue``.)

Threat model: this module is the single statement of every protection's guarantees. The plan checker refuses a
round whose protection fails :func:`unmet_requirements` against the declared :class:`~privfed.threat.model.ThreatModel`,
SECURITY.md's table is :func:`security_table` rendered, and the audit re-runs the same check on a finished run.

Summary (n clients in the round, c declared colluders, t the SecAgg threshold, d the expected dropouts):

* ``plaintext`` hides nothing; only a trusted server.
* ``dp`` (central DP-FedAvg) trusts the server: it sees every update in the clear and adds the noise itself; the
  released model is user-level DP against everyone else.
* ``local-dp`` / ``dp-sgd``: the server sees each client's own noised update (user-level local DP, resp. record-level
  DP of the client's training); no cryptographic hiding.
* ``paillier`` with ``decryption=threshold`` (Shoup-style t-of-n threshold Paillier, dealt shares): hides every update
  from the server plus fewer than T colluding key holders; any T key holders decrypt the sum.
* ``ckks`` / ``paillier`` (shared client key from a key authority): hide every update from a server that colludes
  with no client; any key-holding client colluding with the server decrypts everyone (so c >= 1 fails); tolerate
  any number of dropouts while >= 3 clients contribute; hide individual updates, not the aggregate.
* ``secagg`` (Bonawitz et al. 2017; SecAgg+ graph as an option): hides every update from the server plus fewer than
  t colluding clients (needs t > c); tolerates n - t dropouts (needs n - t >= d); the server learns the sum.
* ``secagg+dp`` (distributed DP): secagg plus integer noise added by every client before masking; epsilon holds
  against the server too (the server never sees an un-noised sum).
* ``ckks+dp``: ckks plus Gaussian noise added by every client before encryption (distributed DP); same
  collusion limit as ckks.

Everyone: an aggregate of a single honest client is that client's update, so at least two honest clients must
survive every round (n - c - d >= 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from protocols.errors import ConfigError
from privfed.threat.model import MALICIOUS, ThreatModel

__all__ = [
    "Protection",
    "RoundContext",
    "CATALOGUE",
    "get",
    "names",
    "unmet_requirements",
    "explain",
    "secagg_threshold",
    "secagg_round",
    "SecAggRound",
    "security_table",
]

CRYPTOGRAPHIC = "cryptographic"
NOISE = "noise"
NONE = "none"


@dataclass(frozen=True)
class Protection:
    """The guarantees of one protection (protocol x DP placement). Text fields feed SECURITY.md and the audit."""

    name: str
    protocol: str
    dp: str
    hides: str
    hides_from: str
    assumptions: tuple[str, ...]
    tolerates_dropouts: str
    output_privacy: str
    limits: tuple[str, ...]
    #: how an individual update is hidden from the server: "none", "noise" (client-side DP) or "cryptographic"
    update_hiding: str
    #: "shared-key" (HE: any colluding key holder breaks it), "threshold" (SecAgg: fewer than t), "n/a"
    collusion_model: str
    #: whether the server learns the round's aggregate
    server_sees_aggregate: bool = True
    #: "user", "record" or "" (no DP)
    dp_unit: str = ""
    #: central DP: the server sees the un-noised sum, so epsilon does not hold against the server
    dp_trusts_server: bool = False
    #: fewest contributing clients for which the protection is meaningful
    min_clients: int = 1
    #: a named baseline kept for comparison only; ``auto`` never picks it
    baseline: bool = False
    server_models: frozenset[str] = field(default_factory=lambda: frozenset({"trusted", "honest-but-curious"}))

    def __post_init__(self) -> None:
        if self.update_hiding not in (NONE, NOISE, CRYPTOGRAPHIC):
            raise ValueError(f"{self.name}: bad update_hiding {self.update_hiding!r}")
        if self.collusion_model not in ("shared-key", "threshold", "n/a"):
            raise ValueError(f"{self.name}: bad collusion_model {self.collusion_model!r}")
        if self.dp not in ("none", "central", "local", "distributed", "dp-sgd"):
            raise ValueError(f"{self.name}: bad dp placement {self.dp!r}")
        if (self.dp == "none") != (self.dp_unit == ""):
            raise ValueError(f"{self.name}: dp placement and dp_unit disagree")

    @property
    def has_dp(self) -> bool:
        return self.dp != "none"


@dataclass(frozen=True)
class RoundContext:
    """What the checker knows about a round: its client count (None if unknown) and the protection's options."""

    clients: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.clients is not None and (isinstance(self.clients, bool) or not isinstance(self.clients, int)
                                         or self.clients < 1):
            raise ConfigError(f"clients must be a positive whole number, got {self.clients!r}")


_HE_ASSUMPTIONS = ("a key authority gives the secret key to the clients only; the server holds public key "
                   "material only",
                   "the server colludes with no key-holding client",
                   "the server follows the protocol (honest-but-curious), unless active=true: then it may deviate "
                   "and key holders check what they decrypt",
                   "clients encode honestly (no range proofs)")
_HE_LIMITS = ("with the shared client key (the default) any single key-holding client colluding with the server "
              "decrypts every update; paillier with decryption=threshold needs T colluding key holders (threshold "
              "CKKS: no maintained library on Python 3.11 offers it, so ckks stays shared-key)",
              "with 2 clients each learns the other's update from the mean (refused below 3)",
              "without active=true the decrypting client cannot verify how many ciphertexts are in the sum it "
              "decrypts (a malicious server could have one update decrypted); with active=true a key holder decrypts "
              "only the sum it recomputed from >= min_clients signed contributions of this round, once per round; "
              "but two key holders can be asked for two sets differing by one client (differencing), so a "
              "malicious server is accepted only with release=key-holders and the shared key",
              "with release=server the server learns the aggregate; release=key-holders keeps it with the clients")
_SHORT_EXPONENT = ("with -o randomness=short-exponent (off by default) encryption also assumes that h^x for a short "
                   "random x is indistinguishable from a uniform element of <h> (Damgard-Jurik-Nielsen)")
_NO_OUTPUT_PRIVACY = "hides individual updates, not the aggregate: combine with DP for output privacy"
_CKKS_LIMIT = ("CKKS decryptions released to the server are flooded with heuristic noise (flood_std, default "
               "2^-25) against key recovery (IND-CPA^D, Li-Micciancio 2021), not proof-level flooding; "
               "release=key-holders avoids releasing decryptions to the server")
_SECAGG_ASSUMPTIONS = ("fewer than t clients collude with the server (t = reconstruction threshold)",
                       "the server follows the protocol (honest-but-curious), unless active=true (Bonawitz et al. "
                       "2017 section 6: signed key advertisements and a consistency round; holds against a malicious "
                       "server when 2t > n + min(C, n) and t - min(C, n) >= 2, C = corrupted clients of the roster "
                       "the server samples the cohort from; complete graph only)",
                       "at least t clients survive every phase")
_SECAGG_LIMITS = ("the server learns the sum of the survivors' updates",
                  "with the SecAgg+ sparse graph the guarantee is probabilistic (Bell et al. 2020) for the declared "
                  "corruption and dropout fractions",
                  "without active=true a malicious server could lie about dropouts to unmask a client; active=true "
                  "protects each input's privacy, not the sum's correctness or availability (the server can always "
                  "abort or drop clients)")

CATALOGUE: dict[str, Protection] = {p.name: p for p in (
    Protection(
        "plaintext", "plaintext", "none", hides="nothing", hides_from="nobody",
        assumptions=("the server is trusted with every update",), tolerates_dropouts="any",
        output_privacy="none", limits=("the server and any eavesdropper on the link see every update",),
        update_hiding=NONE, collusion_model="n/a"),
    Protection(
        "dp", "plaintext", "central", hides="the released model's dependence on any one client (user-level DP)",
        hides_from="everyone who sees the released model, except the server",
        assumptions=("the server is trusted: it sees every update in the clear and adds the noise",),
        tolerates_dropouts="any", output_privacy="user-level (epsilon, delta)-DP, central",
        limits=("no protection of updates from the server", "epsilon does not hold against the server"),
        update_hiding=NONE, collusion_model="n/a", dp_unit="user", dp_trusts_server=True),
    Protection(
        "local-dp", "plaintext", "local", hides="each update behind the client's own noise (local DP)",
        hides_from="the server and everyone downstream, statistically",
        assumptions=("each client clips and noises its own update correctly",), tolerates_dropouts="any",
        output_privacy="user-level (epsilon, delta)-DP per client, local",
        limits=("the server sees every noised update: statistical, not cryptographic, hiding",
                "noise of n clients adds up: far lower utility than central or distributed DP at equal epsilon"),
        update_hiding=NOISE, collusion_model="n/a", dp_unit="user"),
    Protection(
        "dp-sgd", "plaintext", "dp-sgd", hides="each training record's influence on its client's update",
        hides_from="the server and everyone downstream, statistically, at record level",
        assumptions=("each client runs DP-SGD (Opacus) correctly",), tolerates_dropouts="any",
        output_privacy="record-level (epsilon, delta)-DP per client",
        limits=("record-level only: a client's whole dataset is not protected (does not meet a user-level target)",
                "the server sees every update"),
        update_hiding=NOISE, collusion_model="n/a", dp_unit="record"),
    Protection(
        "ckks", "ckks", "none", hides="every individual update (CKKS ciphertexts, add-only aggregation)",
        hides_from="the server and eavesdroppers", assumptions=_HE_ASSUMPTIONS,
        tolerates_dropouts="any number, while >= 3 clients contribute", output_privacy="none",
        limits=(*_HE_LIMITS, _NO_OUTPUT_PRIVACY, _CKKS_LIMIT), update_hiding=CRYPTOGRAPHIC,
        collusion_model="shared-key", min_clients=3),
    Protection(
        "paillier", "paillier", "none", hides="every individual update (packed Paillier ciphertexts)",
        hides_from="the server and eavesdroppers", assumptions=_HE_ASSUMPTIONS,
        tolerates_dropouts="any number, while >= 3 clients contribute", output_privacy="none",
        limits=(*_HE_LIMITS, _NO_OUTPUT_PRIVACY, _SHORT_EXPONENT), update_hiding=CRYPTOGRAPHIC,
        collusion_model="shared-key", min_clients=3),
    Protection(
        "paillier-per-value", "paillier", "none", hides="every individual update (one Paillier ciphertext per value)",
        hides_from="the server and eavesdroppers", assumptions=_HE_ASSUMPTIONS,
        tolerates_dropouts="any number, while >= 3 clients contribute", output_privacy="none",
        limits=(*_HE_LIMITS, _NO_OUTPUT_PRIVACY,
                "a teaching baseline: orders of magnitude slower and larger than packed Paillier"),
        update_hiding=CRYPTOGRAPHIC, collusion_model="shared-key", min_clients=3, baseline=True),
    Protection(
        "secagg", "secagg", "none", hides="every individual update (pairwise and self masks; only the sum opens)",
        hides_from="the server plus fewer than t colluding clients, and eavesdroppers",
        assumptions=_SECAGG_ASSUMPTIONS, tolerates_dropouts="up to n - t at any phase", output_privacy="none",
        limits=_SECAGG_LIMITS, update_hiding=CRYPTOGRAPHIC, collusion_model="threshold", min_clients=2),
    Protection(
        "secagg+dp", "secagg", "distributed",
        hides="every individual update, and the released model's dependence on any one client (distributed DP)",
        hides_from="the server plus fewer than t colluding clients (updates); everyone including the server "
                   "(model, DP)",
        assumptions=(*_SECAGG_ASSUMPTIONS, "every client adds its share of integer noise before masking"),
        tolerates_dropouts="up to n - t at any phase; dropouts lower the noise (accounted from the survivors)",
        output_privacy="user-level (epsilon, delta)-DP, distributed (holds against the server)",
        limits=(*_SECAGG_LIMITS[1:], "colluding clients know their own noise: the noise that protects against "
                "server + c colluders is that of the n - c honest survivors"),
        update_hiding=CRYPTOGRAPHIC, collusion_model="threshold", dp_unit="user", min_clients=2),
    Protection(
        "ckks+dp", "ckks", "distributed",
        hides="every individual update, and the released model's dependence on any one client",
        hides_from="the server and eavesdroppers (updates); everyone who sees the aggregate or the model, the "
                   "key holders included (DP)",
        assumptions=(*_HE_ASSUMPTIONS, "every client adds its share of Gaussian noise before encrypting"),
        tolerates_dropouts="any number, while >= 3 clients contribute; dropouts lower the noise (accounted from "
                           "the survivors)",
        output_privacy="user-level (epsilon, delta)-DP, distributed (holds against the server and key holders)",
        limits=(*_HE_LIMITS, _CKKS_LIMIT, "colluding clients know their own noise: the noise that protects the "
                "released aggregate is that of the honest survivors"), update_hiding=CRYPTOGRAPHIC,
        collusion_model="shared-key", dp_unit="user",
        min_clients=3),
)}


def names(include_baselines: bool = True) -> list[str]:
    return [n for n, p in CATALOGUE.items() if include_baselines or not p.baseline]


def get(name: str) -> Protection:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise KeyError(f"protection {name!r} has no entry in the threat catalogue; known: {', '.join(CATALOGUE)}"
                       ) from None


@dataclass(frozen=True)
class SecAggRound:
    """The public SecAgg parameters of a round of n clients: threshold t, graph, degree k (n - 1 when complete),
    and the corruption / dropout fractions a sparse graph was sized for."""

    n: int
    threshold: int
    graph: str = "complete"
    k: int = 0
    corruption_fraction: float = 0.0
    dropout_fraction: float = 0.0
    source: str = "protocol"


def secagg_round(name: str, clients: int, options: Mapping[str, Any]) -> SecAggRound:
    """The round parameters protection ``name`` (secagg or secagg+dp) uses for ``clients`` with ``options``.

    Asks the protocol itself (``SecAggProtocol.plan(n)``, which raises ConfigError for parameters invalid at that n);
    when the protocol cannot be built here, falls back to its documented default: threshold ceil(2n/3) (at least 2)
    on the complete graph, a fraction of n, or an absolute number.
    """
    from protocols import registry
    from protocols.errors import ConfigError as _ConfigError

    try:
        protocol = registry.create(name, {"max_weight": 1.0, "clip": 1.0, **dict(options)})
        inner = getattr(protocol, "inner", protocol)
        plan = inner.plan(clients)  # type: ignore[attr-defined]
    except _ConfigError:
        raise
    except Exception:  # noqa: BLE001 - not installed / not built yet: the documented default applies
        value = options.get("threshold")
        if value is None:
            t = max(2, math.ceil(2 * clients / 3))
        elif isinstance(value, float):
            t = max(2, math.ceil(value * clients - 1e-9))
        else:
            t = int(value)
        if not 1 < t <= clients:
            raise _ConfigError(f"threshold must satisfy 1 < t <= n = {clients}, got t = {t}") from None
        return SecAggRound(clients, t, "complete", clients - 1, source="documented default")
    return SecAggRound(clients, int(plan.threshold), str(plan.graph), int(plan.k),
                       float(getattr(inner, "corruption_fraction", 0.0)),
                       float(getattr(inner, "dropout_fraction", 0.0)))


def secagg_threshold(clients: int, options: Mapping[str, Any], name: str = "secagg") -> int:
    """The reconstruction threshold t of a SecAgg round over ``clients`` (see :func:`secagg_round`)."""
    return secagg_round(name, clients, options).threshold


def unmet_requirements(name: str, threat: ThreatModel, context: RoundContext | None = None) -> list[str]:
    """Every requirement of ``threat`` that protection ``name`` fails in a round with ``context`` (empty = meets it)."""
    p = get(name)
    ctx = context or RoundContext()
    unmet: list[str] = []
    if threat.server == MALICIOUS and MALICIOUS not in p.server_models:
        unmet += _malicious_server_unmet(name, p, threat, ctx)  # issue 14: active modes (see that function)
    if threat.distrusts_server:
        if p.update_hiding == NONE:
            unmet.append("the server is " + threat.server + " and " + (
                f"{name} shows it every client's update in the clear" if not p.dp_trusts_server else
                f"{name} (central DP) shows it every client's update in the clear before it adds the noise"))
        elif p.update_hiding == NOISE and threat.update_privacy == "cryptographic":
            unmet.append(f"the server is {threat.server} and {name} shows it each client's own noised update "
                         f"(statistical hiding only; declare update_privacy=local-dp to accept that)")
        threshold_he = _threshold_he_unmet(p, threat, ctx)  # issue 13: None unless paillier decryption=threshold
        if threshold_he is not None:
            unmet += threshold_he
        elif p.collusion_model == "shared-key" and threat.collusion >= 1:
            unmet.append(f"any key-holding client colluding with the server decrypts every update, and "
                         f"collusion={threat.collusion} is declared")
        if p.collusion_model == "threshold" and ctx.clients is not None:
            unmet += _secagg_unmet(name, threat, ctx)
        if ctx.clients is not None and p.update_hiding != NONE:
            honest = ctx.clients - threat.collusion - threat.expected_dropouts(ctx.clients)
            if honest < 2:
                unmet.append(f"only {max(honest, 0)} honest client(s) would survive (n={ctx.clients}, "
                             f"collusion={threat.collusion}, dropout={threat.dropout:g}): the aggregate would be "
                             f"one client's update")
    if threat.distrusts_server and p.protocol == "ckks" and ctx.options.get("release", "server") == "server" \
            and ctx.options.get("flood_std", 1.0) == 0:
        unmet.append("flood_std=0 releases exact CKKS decryptions to the server, from which it can recover the "
                     "secret key (Li-Micciancio 2021): keep flood_std > 0 or set release=key-holders")
    if not threat.server_may_see_aggregate and p.server_sees_aggregate and not _keeps_aggregate(p, ctx):
        unmet.append(f"the server may not see the aggregate, and {name} delivers it to the server"
                     + (" (set its option release=key-holders)" if p.collusion_model == "shared-key" else ""))
    if ctx.clients is not None and p.min_clients > 1:
        contributing = ctx.clients - threat.expected_dropouts(ctx.clients)
        if contributing < p.min_clients:
            unmet.append(f"it needs >= {p.min_clients} contributing clients and only {contributing} are expected "
                         f"(n={ctx.clients}, dropout={threat.dropout:g})")
    if threat.wants_dp:
        if not p.has_dp:
            unmet.append(f"an (epsilon={threat.epsilon:g}, delta={threat.delta:g}) target needs DP noise in every "
                         f"round (one un-noised round makes the released model's epsilon infinite), and {name} "
                         f"adds none")
        else:
            if threat.dp_unit == "user" and p.dp_unit == "record":
                unmet.append(f"{name} gives record-level DP only, and the target is user-level (declare "
                             f"dp_unit=record to accept it)")
            if p.dp_trusts_server and threat.distrusts_server:
                unmet.append(f"{name} adds the noise at the server, so its epsilon does not hold against the "
                             f"{threat.server} server")
    return list(dict.fromkeys(unmet))  # one reason once (the active and the threshold checks may both say it)


def _secagg_unmet(name: str, threat: ThreatModel, ctx: RoundContext) -> list[str]:
    """SecAgg's threshold against the declared collusion and dropout, from the round's actual parameters.

    Complete graph: the server plus t colluders reconstruct an honest client's secrets, so t > c; the round aborts
    below t survivors, so n - t >= expected dropouts. Sparse (SecAgg+) graph, whoever chose k and t: the exact
    hypergeometric failure probabilities of :func:`protocols.secagg.graph.sparse_failure` for the declared c and d,
    held to the same 2^-40 (privacy) / 2^-20 (dropouts) standard as the automatic choice.
    """
    from protocols.errors import ConfigError as _ConfigError
    from protocols.secagg.graph import CORRECTNESS_BITS, SECURITY_BITS, sparse_failure

    assert ctx.clients is not None
    n = ctx.clients
    try:
        sa = secagg_round(name, n, ctx.options)
    except _ConfigError as exc:
        return [f"its parameters are invalid for a round of {n} clients: {exc}"]
    t, d, c = sa.threshold, threat.expected_dropouts(n), threat.collusion
    unmet: list[str] = []
    if sa.graph == "complete":
        low, high = max(c + 1, 2), n - d
        if threat.server == MALICIOUS or ctx.options.get("active"):  # active mode also needs 2t > n + min(C, n)
            from protocols.secagg.active import roster_corrupted

            roster = ctx.options.get("roster_size") or n  # C is counted on the roster the cohort is drawn from
            n_c = min(roster_corrupted(roster, sa.corruption_fraction, c), n)
            low = max(low, (n + n_c) // 2 + 1)
        if n - c - d < 2:  # fewer than 2 honest survivors: no threshold helps (refused below), so suggest none
            low = high + 1
        hint = (f" (a threshold in {low}..{high} meets both: e.g. {name}.threshold={low})" if low <= high else
                f" (no threshold meets both collusion={c} and {d} dropouts with {n} clients)")
        if t <= c:
            unmet.append(f"its threshold t={t} (of n={n}) does not exceed the declared collusion={c}: the server plus "
                         f"t colluders can unmask an honest client" + hint)
        if n - t < d:
            unmet.append(f"n - t = {n} - {t} = {n - t} does not cover the {d} expected dropouts "
                         f"(dropout={threat.dropout:g} of {n}); the round would abort" + hint)
        return unmet
    privacy, correctness = sparse_failure(n, sa.k, t, c, d)
    if privacy > 2.0 ** -SECURITY_BITS:
        unmet.append(f"on its sparse graph (k={sa.k} neighbours, t={t}) an honest client has >= t colluding "
                     f"neighbours with probability {privacy:.3g} for collusion={c} of n={n}, above 2^-{SECURITY_BITS}: "
                     f"raise {name}.threshold or let privfed choose k and t (drop {name}.neighbours/threshold and "
                     f"set corruption_fraction >= {c / n:.3g})")
    if correctness > 2.0 ** -CORRECTNESS_BITS:
        unmet.append(f"on its sparse graph (k={sa.k} neighbours, t={t}) some client keeps fewer than t surviving "
                     f"neighbours with probability {correctness:.3g} for {d} expected dropouts of n={n}, above "
                     f"2^-{CORRECTNESS_BITS}; the round would abort")
    return unmet


def secagg_reason(name: str, threat: ThreatModel, n: int, options: Mapping[str, Any]) -> str:
    """What was checked for an accepted SecAgg round of ``n`` clients, and nothing more."""
    sa = secagg_round(name, n, options)
    t, c, d = sa.threshold, threat.collusion, threat.expected_dropouts(n)
    if sa.graph == "complete":
        if threat.server == MALICIOUS:  # the active guarantee holds for n_C < min(t, 2t - n) colluders only
            most = min(t - 1, 2 * t - n - 1)
            return (f"hides updates from a malicious server + up to {most} colluders (2t > n + n_C: 2*{t} > {n} + "
                    f"collusion={c}) and tolerates up to {n - t} dropout(s) (>= {d} expected)")
        return (f"hides updates from the server + up to {t - 1} colluders (t={t} > collusion={c}) and tolerates up to "
                f"{n - t} dropout(s) (>= {d} expected)")
    from protocols.secagg.graph import sparse_failure

    privacy, correctness = sparse_failure(n, sa.k, t, c, d)
    return (f"sparse graph k={sa.k}, t={t}: P(an honest client has >= t of collusion={c} among its neighbours) = "
            f"{privacy:.2g} <= 2^-40, P(a client keeps < t of its neighbours with {d} dropouts) = {correctness:.2g} "
            f"<= 2^-20")


# -- threshold HE (issue 13): the condition is computed in protocols.threshold_paillier; this only phrases it --------

def _threshold_he_unmet(p: Protection, threat: ThreatModel, ctx: RoundContext) -> list[str] | None:
    """Unmet collusion/dropout requirements of ``paillier`` with ``decryption=threshold`` (None for other
    protections and for shared-key decryption, which the shared-key check covers)."""
    if p.protocol != "paillier" or ctx.options.get("decryption", "shared-key") != "threshold":
        return None
    from protocols.errors import ConfigError
    from protocols.threshold_paillier import threat_conditions
    t = ctx.options.get("threshold")
    if ctx.clients is None:  # an absolute T is checked now; a fraction once the client count is known
        if isinstance(t, int) and not isinstance(t, bool) and threat.collusion >= t:
            return [f"its decryption threshold T={t} does not exceed the declared collusion={threat.collusion}: "
                    f"the server plus T colluding key holders decrypt any single update"]
        return []
    try:
        return list(threat_conditions(ctx.options, ctx.clients, threat.collusion,
                                      threat.expected_dropouts(ctx.clients))["unmet"])
    except ConfigError as exc:
        return [str(exc)]


def _threshold_he_explain(ctx: RoundContext) -> str:
    from protocols.threshold_paillier import threat_conditions
    if ctx.clients is None:
        return "hides updates from the server + fewer than T colluding key holders (threshold decryption)"
    c = threat_conditions(ctx.options, ctx.clients)
    return (f"hides updates from the server + up to {c['tolerated_colluders']} colluding key holders (threshold "
            f"decryption, T={c['threshold']} of {c['key_holders']}) and tolerates {c['tolerated_decrypt_dropouts']} "
            f"key holder(s) gone at decrypt")


def _keeps_aggregate(p: Protection, ctx: RoundContext) -> bool:
    """HE with ``release="key-holders"`` leaves the decrypted aggregate with the clients (the protocols' default,
    ``release="server"``, hands it to the server)."""
    return p.collusion_model == "shared-key" and ctx.options.get("release", "server") == "key-holders"


def explain(name: str, threat: ThreatModel, context: RoundContext | None = None) -> str:
    """Why ``name`` meets ``threat`` (call only when :func:`unmet_requirements` is empty): one sentence."""
    p = get(name)
    ctx = context or RoundContext()
    parts: list[str] = []
    if not threat.distrusts_server:
        parts.append("trusted server")
    elif p.collusion_model == "threshold":
        if ctx.clients is not None:
            parts.append(secagg_reason(name, threat, ctx.clients, ctx.options))
        else:
            parts.append(f"hides updates from the server + fewer than t colluders (needs t > {threat.collusion} "
                         f"and n - t >= expected dropouts; checked when the client count is known)")
    elif _threshold_he_unmet(p, threat, ctx) is not None:
        parts.append(_threshold_he_explain(ctx))
    elif p.collusion_model == "shared-key":
        parts.append("hides updates from a server colluding with no client (collusion=0)")
    elif p.update_hiding == NOISE:
        parts.append("server sees only client-noised updates (update_privacy=local-dp accepted)")
    if threat.wants_dp:
        parts.append(f"{p.dp_unit}-level DP toward epsilon={threat.epsilon:g}, delta={threat.delta:g}")
    elif p.has_dp:
        parts.append(f"{p.dp_unit}-level DP")
    if not threat.server_may_see_aggregate:
        parts.append("aggregate stays with the key holders (release=key-holders)")
    return "; ".join(parts) or "meets the threat model"


def security_table() -> str:
    """SECURITY.md's threat-model table, one row per protection, from this catalogue."""
    header = ("| protection | hides what | from whom | assumptions | tolerates dropouts | output privacy | "
              "known limits |")
    rows = [header, "|" + "---|" * 7]
    for p in CATALOGUE.values():
        rows.append(f"| `{p.name}` | {p.hides} | {p.hides_from} | {'; '.join(p.assumptions)} | "
                    f"{p.tolerates_dropouts} | {p.output_privacy} | {'; '.join(p.limits)} |")
    return "\n".join(rows) + "\n"


# -- issue 14: malicious server (active modes) -- a minimal, separate branch; the conditions live next to the
# protocols (protocols.secagg.active, protocols.he_active) and are only phrased here.
def _malicious_server_unmet(name: str, p: Protection, threat: ThreatModel, ctx: RoundContext) -> list[str]:
    """Empty when ``name`` with ``ctx.options`` has active checks that hold against a malicious server.

    SecAgg (and secagg+dp): :func:`protocols.secagg.active.cohort_reason`, the check every honest client runs on
    the cohort it is shown, here on the planned clients per round, the roster size (option ``roster_size`` or the
    roster file; without either the cohort is the whole roster) and the declared collusion."""
    if p.protocol not in ("secagg", "paillier", "ckks") or p.dp not in ("none", "distributed") \
            or (p.dp == "distributed" and p.protocol == "paillier"):
        return [f"it assumes the server follows the protocol, and a malicious server is declared (active "
                f"checks exist for secagg, secagg+dp, paillier, ckks and ckks+dp: -o NAME.active=true)"]
    if p.protocol == "secagg":
        from protocols.secagg.active import protects_against_malicious_server
    else:
        from protocols.he_active import protects_against_malicious_server
    ok, why = protects_against_malicious_server(ctx.options)
    if not ok:
        return [f"it does not hold against a malicious server: {why}"]
    if p.protocol == "secagg" and ctx.clients is not None:
        reason = active_cohort_reason(name, ctx.clients, ctx.options, threat.collusion)
        if reason is not None:
            return [f"it does not hold against a malicious server: {reason} (C = the declared collusion, at least "
                    f"corruption_fraction of the roster)"]
    return []


def active_cohort_reason(name: str, clients: int, options: Mapping[str, Any], collusion: int = 0) -> str | None:
    """The active-SecAgg cohort condition for ``clients`` per round with ``options`` (None: it holds), from the
    protocol's own check (:func:`protocols.secagg.active.cohort_reason`)."""
    from protocols import registry
    from protocols.errors import ConfigError as _ConfigError
    from protocols.secagg.active import ActiveSecAggProtocol, cohort_reason

    try:
        protocol = registry.create(name, {"max_weight": 1.0, "clip": 1.0, **dict(options)})
    except _ConfigError as exc:
        return f"its options are invalid: {exc}"
    inner = getattr(protocol, "inner", protocol)
    if not isinstance(inner, ActiveSecAggProtocol):
        return "its SecAgg is not in active mode"
    return cohort_reason(inner, clients, inner.population, collusion)


#: option sets a protection is tried with when listing the malicious-server claims (paillier's threshold decryption
#: is a variant of the same catalogue entry); since the review, HE with release=server or threshold decryption is
#: refused (differencing across key holders, protocols.he_active), so only SecAgg's entries are listed; the accepted
#: release=key-holders HE variants are not listed (the contract suite has no harness for a mean kept by key holders)
_ACTIVE_OPTION_VARIANTS: dict[str, tuple[dict[str, Any], ...]] = {"paillier": ({}, {"decryption": "threshold"})}


def malicious_server_protections() -> list[tuple[str, str, dict[str, Any]]]:
    """Every (label, protection, options) that claims input privacy against a malicious server: the catalogue
    entries whose ``active=true`` mode meets ``server=malicious`` (checked by :func:`unmet_requirements`, so a new
    active protection is listed, and tested, as soon as the catalogue accepts it). Labels: ``NAME@active``, with
    the option variant in brackets (``paillier[threshold]@active``)."""
    threat = ThreatModel(server=MALICIOUS)
    out = []
    for name in names():
        for variant in _ACTIVE_OPTION_VARIANTS.get(name, ({},)):
            options = {"active": True, **variant}
            if not unmet_requirements(name, threat, RoundContext(None, options)):
                tag = "".join(f"[{v}]" for v in variant.values())
                out.append((f"{name}{tag}@active", name, options))
    return out
