"""Labelled sequences, text classification (CSV column, one folder per label), LEAF JSON, exact masking of padded
sequences, per-client scaling statistics, metrics, and evaluation splits for many small clients."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.errors import ConfigError
from privfed.fl.config import DataConfig, ModelConfig
from privfed.fl.data import PAD, _split_counts, build_federated
from privfed.fl.metrics import IGNORE, ClassTally, ErrorTally, macro_f1
from privfed.fl.models import ModelSpec, build_model
from privfed.fl.scaling import Moments, Scale
from userdata_fixtures import labelled_sequences_csv, leaf_shakespeare

torch.set_num_threads(1)

SEQ = dict(source="csv", task="classification", sequence_column="seq", time_column="when", label_column="label",
           key_column="owner", seq_len=16)


def test_labelled_sequences_one_sample_per_sequence_padded_with_presence_channel(tmp_path: Path) -> None:
    path = labelled_sequences_csv(tmp_path / "seq.csv", sequences=60)
    data = build_federated(DataConfig(path=str(path), **SEQ), 0)
    assert data.classes == ("a", "b", "c") and data.masked and data.channels == 4
    assert sorted(c.name for c in data.clients) == [f"u{k}" for k in range(6)]
    total = len(data.eval) + sum(len(c.train) + len(c.val) for c in data.clients)
    assert total == 60
    x = data.clients[0].train.inputs
    presence = x[:, :, -1]
    lengths = presence.sum(dim=1)
    assert ((lengths >= 6) & (lengths < 20)).all()
    for row, n in zip(x, lengths.long()):  # right-padded: present steps first, zeros after
        assert torch.all(row[:n, -1] == 1) and torch.all(row[n:] == 0)


def test_inconsistent_label_names_the_sequence_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "seq.csv"
    path.write_text("seq,when,f,label,owner\ns1,1,0.5,a,u\ns1,2,0.1,b,u\ns2,1,0.3,b,u\n")
    with pytest.raises(ConfigError, match=r"sequence 's1' has more than one label: 'a' \(.*line 2\) and 'b' "
                                          r"\(.*line 3\)"):
        build_federated(DataConfig(path=str(path), **SEQ), 0)
    path.write_text("seq,when,f,label,owner\ns1,1,0.5,a,u\ns2,1,0.1,NA,u\n")
    with pytest.raises(ConfigError, match=r"line 3, column 'label': missing label 'NA'"):
        build_federated(DataConfig(path=str(path), **SEQ), 0)


def test_long_sequences_are_truncated_with_a_note_and_dirichlet_splits_by_label(tmp_path: Path) -> None:
    path = labelled_sequences_csv(tmp_path / "seq.csv", sequences=90)
    data = build_federated(DataConfig(path=str(path), **{**SEQ, "seq_len": 8}), 0)
    assert any("keep their last 8 steps" in n for n in data.notes)
    skewed = build_federated(DataConfig(path=str(path), **{**SEQ, "partition": "dirichlet", "clients": 4,
                                                             "alpha": 0.05}), 0)
    shares = [np.bincount(c.train.targets.numpy(), minlength=3).max() / len(c.train) for c in skewed.clients]
    assert np.mean(shares) > 0.6


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_masking_is_exact_whatever_the_padding(cell: str) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(1, 7, 3)).astype(np.float32)
    spec = ModelSpec("classification", cell, 2, 8, 4, 0.0, 0, 4, 3, masked=True)
    model = build_model(spec, 0).eval()
    outputs = []
    for pad in (0, 5, 30):
        x = np.zeros((1, 7 + pad, 4), dtype=np.float32)
        x[0, :7, :3], x[0, :7, 3] = values[0], 1.0
        outputs.append(model(torch.from_numpy(x)))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-6) and torch.allclose(outputs[0], outputs[2], atol=1e-6)
    tokens = ModelSpec("classification", cell, 1, 8, 4, 0.0, 10, 0, 2, pad_index=1, masked=True)
    token_model = build_model(tokens, 0).eval()
    a = token_model(torch.tensor([[5, 6, 7]]))
    b = token_model(torch.tensor([[5, 6, 7, 1, 1, 1, 1]]))
    assert torch.allclose(a, b, atol=1e-6)


def test_text_classification_from_a_csv_column_and_from_label_folders(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    rows = ["user,review,stars"] + [f"u{i % 4},\"{'great fun' if i % 2 else 'dull and slow'} {i}\","
                                    f"{'pos' if i % 2 else 'neg'}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    data = build_federated(DataConfig(source="csv", task="classification", path=str(path), text_column="review",
                                      label_column="stars", key_column="user", seq_len=8), 0)
    assert data.classes == ("neg", "pos") and data.vocab[1] == PAD and data.pad_index == 1
    assert [c.name for c in data.clients] == ["u0", "u1", "u2", "u3"]
    folders = tmp_path / "folders"
    for label in ("ham", "spam"):
        (folders / label).mkdir(parents=True)
        for user in ("alice", "bob", "carol"):
            (folders / label / f"{user}.txt").write_text(f"{label} words from {user} " * 5)
    data = build_federated(DataConfig(source="text", task="classification", path=str(folders), seq_len=16,
                                      test_fraction=0.2), 0)
    assert data.classes == ("ham", "spam") and sorted(c.name for c in data.clients) == ["alice", "bob", "carol"]
    (folders / "ham" / "alice.txt").write_text("")
    assert any("1 empty documents" in n for n in build_federated(
        DataConfig(source="text", task="classification", path=str(folders), seq_len=16, test_fraction=0.2),
        0).notes)


def test_leaf_shakespeare_is_next_character_by_user(tmp_path: Path) -> None:
    path = leaf_shakespeare(tmp_path / "all_data_0.json")
    data = build_federated(DataConfig(source="leaf", path=str(path), seq_len=20), 0)
    assert [c.name for c in data.clients] == ["THE_SONNETS_0", "THE_SONNETS_1", "THE_SONNETS_2"]
    x, y = data.clients[0].train.inputs, data.clients[0].train.targets
    assert x.shape[1:] == (20,) and torch.equal(x[:, 1:], y[:, :-1])  # targets: the inputs shifted by one
    raw = json.loads(path.read_text())
    raw["num_samples"][0] += 1
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="user 'THE_SONNETS_0': num_samples says 61"):
        build_federated(DataConfig(source="leaf", path=str(path)), 0)
    path.write_text('{"users": ["a"], "user_data": {"a": {"x": [[1, 2]], "y": []}}}')
    with pytest.raises(ConfigError, match="user 'a' has 1 x but 0 y"):
        build_federated(DataConfig(source="leaf", path=str(path)), 0)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        build_federated(DataConfig(source="leaf", path=str(path)), 0)


def test_leaf_classification_of_number_sequences(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    users = {f"f{u}": {"x": [rng.normal(size=12).round(3).tolist() for _ in range(20)],
                       "y": [int(v) for v in rng.integers(0, 3, 20)]} for u in range(3)}
    path = tmp_path / "femnist.json"
    path.write_text(json.dumps({"users": list(users), "num_samples": [20] * 3, "user_data": users}))
    data = build_federated(DataConfig(source="leaf", task="classification", path=str(path), seq_len=12), 0)
    assert data.classes == ("0", "1", "2") and data.channels == 2 and data.masked
    users["f1"]["x"][3] = "text among numbers"
    path.write_text(json.dumps({"users": list(users), "num_samples": [20] * 3, "user_data": users}))
    with pytest.raises(ConfigError, match="user 'f1' sample 3"):
        build_federated(DataConfig(source="leaf", task="classification", path=str(path)), 0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=6), st.integers(1, 3), st.integers(0, 2**31))
def test_combined_client_moments_equal_pooled_statistics(sizes: list[int], channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(rng.uniform(-50, 50), rng.uniform(0.1, 20), size=(n, channels)) for n in sizes]
    pooled = np.concatenate(parts)
    combined = Moments.combine(Moments.of(p) for p in parts)
    assert np.allclose(combined.mean, pooled.mean(axis=0), atol=1e-8 * (1 + np.abs(pooled).max()))
    scale = Scale.from_moments(combined)
    expected = np.where(pooled.std(axis=0) > 0, pooled.std(axis=0), 1.0)
    assert np.allclose(scale.std, expected, rtol=1e-8, atol=1e-9)
    with_nan = parts[0].copy()
    with_nan[0, 0] = np.nan
    assert Moments.of(with_nan).count[0] == sizes[0] - 1


def test_metrics_known_answers() -> None:
    # truth 0,0,1,1,2 ; predicted 0,1,1,1,0: class 0 TP 1 FP 1 FN 1 -> 1/2; class 1 TP 2 FP 1 -> 4/5; class 2 -> 0
    assert math.isclose(macro_f1([0, 1, 1, 1, 0], [0, 0, 1, 1, 2], 3), (1 / 2 + 4 / 5) / 3)
    tally = ClassTally(4)
    tally.add(np.array([3, 1, 2]), np.array([3, IGNORE, 1]))
    assert tally.total == 2 and tally.accuracy() == 0.5
    errors = ErrorTally([10.0, 2.0], ["pm", "t"])
    errors.add(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 1.0], [0.0, 0.0]]))
    report = errors.report()
    assert report["mae_by_column"] == {"pm": 5.0, "t": 1.0} and report["mae"] == 3.0
    assert math.isclose(report["rmse"], math.sqrt((100 + 4) / 4))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.integers(0, 2**31))
def test_macro_f1_is_one_exactly_when_every_prediction_is_right(truth: list[int], seed: int) -> None:
    truth_a = np.array(truth)
    assert macro_f1(truth_a, truth_a, 6) == 1.0
    wrong = truth_a.copy()
    wrong[np.random.default_rng(seed).integers(len(truth))] += 1
    assert macro_f1(wrong, truth_a, 7) < 1.0


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=300), st.floats(0.01, 0.5), st.integers(0, 2**31))
def test_split_counts_are_proportional_at_the_sample_level(sizes: list[int], fraction: float, seed: int) -> None:
    sizes_a = np.array(sizes)
    counts = _split_counts(sizes_a, fraction, np.zeros_like(sizes_a), np.random.default_rng(seed))
    assert (counts <= sizes_a).all() and (counts >= np.floor(sizes_a * fraction)).all()
    assert counts.sum() == round(sizes_a.sum() * fraction)
    val = _split_counts(sizes_a, fraction, counts, np.random.default_rng(seed + 1))
    assert (counts + val <= sizes_a).all()  # the validation draw never takes a sample the test draw took


def test_many_tiny_clients_leave_a_non_empty_evaluation_set() -> None:
    data = build_federated(DataConfig(partition="iid", clients=2000), 0)
    assert len(data.clients) == 2000 and len(data.eval) > 0
    with pytest.raises(ConfigError, match="cannot split"):
        build_federated(DataConfig(partition="iid", clients=10**6), 0)
    small = build_federated(DataConfig(partition="iid", clients=1, max_chars_per_client=70, seq_len=30,
                                       modules=("json",)), 0)
    assert len(small.eval) == 1 and len(small.clients[0].train) == 1  # 2 x 0.1 rounds to 0: still one
    with pytest.raises(ConfigError, match="leaves an empty global evaluation set"):
        build_federated(DataConfig(max_chars_per_client=40, seq_len=30, modules=("json",)), 0)


def test_model_spec_from_a_padded_dataset(tmp_path: Path) -> None:
    path = labelled_sequences_csv(tmp_path / "seq.csv", sequences=30)
    data = build_federated(DataConfig(path=str(path), **SEQ), 0)
    spec = data.model_spec(ModelConfig(hidden=8))
    assert spec.masked and spec.input_channels == 4 and spec.output_size == 3
    assert build_model(spec, 0)(data.eval.inputs).shape == (len(data.eval), 3)


LEAF_X = st.one_of(st.text(max_size=12), st.integers(-3, 3), st.lists(st.floats(-5, 5), max_size=4),
                   st.lists(st.text(max_size=5), max_size=3), st.lists(st.lists(st.integers(0, 3), max_size=3),
                                                                        max_size=3), st.none())
LEAF_Y = st.one_of(st.text(max_size=2), st.integers(0, 3), st.none(), st.lists(st.integers(), max_size=2))


@settings(max_examples=60, deadline=None)
@given(users=st.dictionaries(st.text(min_size=1, max_size=4), st.lists(st.tuples(LEAF_X, LEAF_Y), max_size=5),
                             max_size=4),
       task=st.sampled_from(["next-token", "classification"]), lie=st.booleans())
def test_fuzzed_leaf_files_load_or_raise_config_error(tmp_path_factory, users, task: str, lie: bool) -> None:
    path = tmp_path_factory.mktemp("leaf") / "fuzz.json"
    body = {"users": list(users), "num_samples": [len(v) + int(lie) for v in users.values()],
            "user_data": {u: {"x": [x for x, _ in v], "y": [y for _, y in v]} for u, v in users.items()}}
    path.write_text(json.dumps(body))
    try:
        data = build_federated(DataConfig(source="leaf", task=task, path=str(path), seq_len=4), 0)
    except ConfigError as exc:
        assert str(exc)
        return
    assert not lie and all(len(c.train) > 0 for c in data.clients)
