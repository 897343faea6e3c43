"""Run the empirical attacks on every protection of a ``privfed compare`` (``--attacks``).

The attack task (the default when no config is given): word-level next-token prediction on the Python standard
library's docstrings, one client per module, written as text files and read back through the ordinary text loader,
so clients' vocabularies differ (a character vocabulary is shared by everyone and would prove nothing). The first
client is the target: random canary sentences ("the secret code of <module> is d d d d d d") are planted in its
file. After each protection's run:

* token recovery: :func:`privfed.audit.attacks.token_presence_attack` on exactly the bytes the server received from
  the target each round it took part (mean over those rounds), against the target's true training-token set, beside
  the chance level (|target tokens| / |all clients' tokens|);
* canary exposure of the final model among random codes of the same format;
* loss-threshold membership inference on the final model: every client's training sequences (members) against the
  global evaluation sequences (non-members), AUC and TPR at 1% FPR.

Experiment randomness (the corpus, the canary, the candidates) comes from the experiment seed: it is test data, not
a secret of any protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from privfed.audit.attacks import EmbeddingRows, canary_exposure, membership_inference, token_presence_attack
from privfed.fl.config import ExperimentConfig
from privfed.experiment.fedavg import FedAvgResult
from privfed.fl.models import task_loss
from privfed.fl.sources import DEFAULT_MODULES, stdlib_docstrings

__all__ = ["write_attack_corpus", "attack_overrides", "run_attacks", "CANARY_DIGITS", "CANARY_REPEATS"]

CANARY_DIGITS = 6
CANARY_REPEATS = 12
CANDIDATES = 1023
CHARS_PER_CLIENT = 6000


def _canary_words(module: str, code: list[int]) -> list[str]:
    return ["the", "secret", "code", "of", module, "is", *map(str, code)]


def write_attack_corpus(directory: Path, seed: int) -> dict[str, Any]:
    """One ``NN-module.txt`` per module; canaries planted in the first. Returns the canary description."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 4242])  # test data, not a protocol secret
    code = [int(d) for d in rng.integers(0, 10, CANARY_DIGITS)]
    target = DEFAULT_MODULES[0]
    for index, (name, text) in enumerate(stdlib_docstrings(DEFAULT_MODULES, CHARS_PER_CLIENT)):
        if name == target:
            lines = text.split("\n")
            step = max(1, len(lines) // CANARY_REPEATS)
            sentence = " ".join(_canary_words(name, code)) + " ."
            for k in range(CANARY_REPEATS):
                lines.insert(min(len(lines), k * (step + 1)), sentence)
            text = "\n".join(lines)
        (directory / f"{index:02d}-{name}.txt").write_text(text, encoding="utf-8")
    return {"target": f"00-{target}.txt", "module": target, "code": code, "repeats": CANARY_REPEATS}


def attack_overrides(config_path: str | None, out_dir: Path) -> list[str]:
    """Config overrides selecting the attack task (only when no config file is given)."""
    if config_path:
        return []
    corpus = out_dir / "attack-corpus"
    return [f'data.source="text"', f'data.path="{corpus.as_posix()}"', 'data.tokens="word"',
            "data.vocab_size=6000", "data.max_chars_per_client=0", "data.seq_len=24", "train.max_batches=0",
            "train.weight_decay=0.0"]


def _token_ids(inputs: torch.Tensor) -> set[int]:
    return {int(t) for t in torch.unique(inputs)}


def _sequence_losses(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        outputs = model(inputs)
        per_token = task_loss("next-token", outputs, targets, reduction="none").reshape(targets.shape)
    return per_token.mean(dim=1).numpy()


def _exposure(model: torch.nn.Module, vocab: tuple[str, ...], canary: dict[str, Any], seed: int) -> float | None:
    index = {token: i for i, token in enumerate(vocab)}
    words = _canary_words(canary["module"], canary["code"])
    if any(w not in index for w in words) or any(str(d) not in index for d in range(10)):
        return None
    prefix = [index[w] for w in words[:-CANARY_DIGITS]]
    rng = np.random.default_rng([seed, 4343])
    codes: set[tuple[int, ...]] = set()
    while len(codes) < CANDIDATES:
        candidate = tuple(int(d) for d in rng.integers(0, 10, CANARY_DIGITS))
        if list(candidate) != canary["code"]:
            codes.add(candidate)
    ordered = [tuple(canary["code"]), *sorted(codes)]
    sequences = torch.tensor([prefix + [index[str(d)] for d in code] for code in ordered], dtype=torch.long)
    model.eval()
    with torch.no_grad():
        logits = model(sequences[:, :-1])
        per_token = task_loss("next-token", logits, sequences[:, 1:], reduction="none").reshape(len(ordered), -1)
    code_loss = per_token[:, -CANARY_DIGITS:].sum(dim=1).numpy()
    losses = {code: float(loss) for code, loss in zip(ordered, code_loss)}
    return canary_exposure(lambda seq: losses[tuple(seq)], list(ordered[0]), [list(c) for c in ordered[1:]])


def run_attacks(config: ExperimentConfig, out_dir: Path
                ) -> tuple[Callable[[str, FedAvgResult, dict[str, Any]], None], dict[str, Any]]:
    """Write the corpus (if the attack task is used) and return the per-protection hook plus run facts."""
    canary = write_attack_corpus(out_dir / "attack-corpus", config.seed) if config.data.source == "text" and \
        Path(config.data.path) == out_dir / "attack-corpus" else None

    def hook(protection: str, result: FedAvgResult, row: dict[str, Any]) -> None:
        data = result.dataset
        target = next((c for c in data.clients if canary and c.name == canary["target"]), data.clients[0])
        union = set().union(*(_token_ids(c.train.inputs) for c in data.clients))
        true = _token_ids(target.train.inputs)
        embed = result.layout.names.index("embed.weight") if "embed.weight" in result.layout.names else None
        scores = []
        if embed is not None:
            offset = int(sum(int(np.prod(s)) for s in result.layout.shapes[:embed]))
            vocab_size, width = result.layout.shapes[embed]
            rows = EmbeddingRows(offset, vocab_size, width, result.layout.size)
            for report in result.reports:
                sent = [payload for _, cid, payload in report.server_view if cid == target.client_id]
                if sent:
                    scores.append(token_presence_attack(sent, rows, true, union))
        if scores:
            row["token_recovery_precision"] = float(np.mean([s.precision for s in scores]))
            row["token_recovery_recall"] = float(np.mean([s.recall for s in scores]))
            row["token_recovery_chance"] = float(np.mean([s.chance for s in scores]))
            row["token_recovery_view"] = scores[0].view
        model = result.model()
        row["canary_exposure"] = _exposure(model, data.vocab, canary, config.seed) if canary else None
        members = np.concatenate([_sequence_losses(model, c.train.inputs, c.train.targets) for c in data.clients])
        others = _sequence_losses(model, data.eval.inputs, data.eval.targets)
        row["mia_auc"], row["mia_tpr_at_1pct_fpr"] = membership_inference(members, others)
        for report in result.reports:  # the raw bytes are not needed any more
            report.server_view.clear()

    return hook, {"attack_task": canary}
