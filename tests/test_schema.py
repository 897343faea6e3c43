"""The public task schema (privfed.fl.schema, ``privfed schema``): round trip, strict refusal of malformed files,
and node data that does not fit refused with DataMismatchError (never a silent <unk>-filled or mis-scaled run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from protocols.errors import ConfigError, PrivfedError
from privfed.cli import main
from privfed.fl.config import ModelConfig, load_config
from privfed.fl.schema import (DataMismatchError, TaskSchema, load_schema, node_split, schema_from_csv,
                               schema_from_text)

PUBLIC = "the quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture()
def text_schema(tmp_path: Path) -> tuple[TaskSchema, Path]:
    (tmp_path / "public.txt").write_text(PUBLIC)
    out = tmp_path / "schema.json"
    result = CliRunner().invoke(main, ["schema", "--source", "text", "--path", str(tmp_path / "public.txt"),
                                       "--out", str(out), "--seq-len", "8", "--hidden", "8", "--max-unknown", "0.1"])
    assert result.exit_code == 0, result.output
    return load_schema(out), out


def test_round_trip_and_model_from_the_schema_alone(text_schema: tuple[TaskSchema, Path]) -> None:
    schema, path = text_schema
    assert schema.vocab[0] == "<unk>" and set(schema.vocab[1:]) == set(PUBLIC)
    assert TaskSchema.from_json(json.loads(path.read_text())) == schema
    spec = schema.model_spec()
    assert spec.vocab_size == len(schema.vocab) and spec.hidden == 8


def test_node_split_uses_the_schema_vocabulary(tmp_path: Path, text_schema: tuple[TaskSchema, Path]) -> None:
    schema, _ = text_schema
    (tmp_path / "node").mkdir()
    (tmp_path / "node" / "a.txt").write_text("a lazy brown dog " * 30)
    split = node_split(schema, tmp_path / "node", seed=3)
    assert len(split.train) > 0 and split.train.inputs.shape[1] == schema.seq_len
    assert int(split.train.inputs.max()) < len(schema.vocab)


@pytest.mark.parametrize("text,reason", [("ZZZZ QQQQ XXXX " * 20, "outside the schema's vocabulary"),
                                         ("dog", "too short"), ("", "no text")])
def test_data_that_does_not_fit_is_refused(tmp_path: Path, text_schema: tuple[TaskSchema, Path], text: str,
                                           reason: str) -> None:
    schema, _ = text_schema
    (tmp_path / "n.txt").write_text(text)
    with pytest.raises(DataMismatchError, match=reason) as info:
        node_split(schema, tmp_path / "n.txt", seed=0)
    assert not isinstance(info.value, ConfigError)  # the node refuses the round; the run goes on


def test_csv_schema_scaling_and_wrong_channels(tmp_path: Path) -> None:
    rows = "\n".join(f"a,{i},{2 * i + 1}" for i in range(50))
    (tmp_path / "public.csv").write_text("client,x,y\n" + rows + "\n")
    schema = schema_from_csv(tmp_path / "public.csv", seq_len=4)
    assert schema.columns == ("x", "y")
    assert schema.mean == pytest.approx((24.5, 50.0))
    split = node_split(schema, tmp_path / "public.csv", seed=0)
    both = np.concatenate([split.train.inputs.numpy().reshape(-1, 2), split.val.inputs.numpy().reshape(-1, 2)])
    assert abs(both.mean()) < 0.5  # scaled with the public mean/std
    (tmp_path / "other.csv").write_text("client,x,z\n" + rows + "\n")
    with pytest.raises(DataMismatchError, match="channels"):
        node_split(schema, tmp_path / "other.csv", seed=0)


_FIELDS = ["format", "source", "seq_len", "model", "tokens", "vocab", "max_unknown_fraction", "val_fraction",
           "max_weight", "columns", "mean", "std", "key_column"]
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=3))
_JUNK = st.one_of(_SCALAR, st.lists(_SCALAR, max_size=3),
                  st.dictionaries(st.sampled_from(["cell", "hidden", "layers", "embedding", "dropout", "x"]), _SCALAR,
                                  max_size=3))


@settings(max_examples=150, deadline=None)
@given(field=st.sampled_from(_FIELDS + ["surprise"]), value=_JUNK)
def test_malformed_schema_is_refused_with_config_error(field: str, value: object) -> None:
    base = TaskSchema("text", 8, ModelConfig(hidden=8), vocab=("<unk>", "a", "b")).to_json()
    mutated = {**base, field: value}
    try:
        parsed = TaskSchema.from_json(mutated)
    except ConfigError:
        return
    except PrivfedError as exc:  # pragma: no cover - the wrong error type is a defect
        pytest.fail(f"{type(exc).__name__}: {exc}")
    # accepted only if the mutation kept a valid schema: then it round-trips
    assert TaskSchema.from_json(parsed.to_json()) == parsed


def test_schema_applies_to_an_in_process_run_config(tmp_path: Path, text_schema: tuple[TaskSchema, Path]) -> None:
    schema, path = text_schema
    config = load_config(None, ["data.source=text", f"data.schema={path}", "model.hidden=99"])
    assert config.model.hidden == schema.model.hidden and config.data.seq_len == schema.seq_len
    (tmp_path / "bad.json").write_text('{"format": "privfed-schema/1", "source": "text"}')
    with pytest.raises(ConfigError, match="schema"):
        load_config(None, ["data.source=text", f"data.schema={tmp_path / 'bad.json'}"])


def test_in_process_clients_follow_the_schema_unk_policy(tmp_path: Path, text_schema: tuple[TaskSchema, Path]) -> None:
    """The in-process runtime applies the same <unk> policy a Flower node applies (one rule, check_unknown): a client
    whose text is mostly outside the vocabulary sits the run out, the run's data notes name it, the others train;
    a client at exactly the allowed fraction stays."""
    from privfed.fl.data import build_federated

    schema, path = text_schema
    folder = tmp_path / "clients"
    folder.mkdir()
    (folder / "alice.txt").write_text("the lazy dog jumps over the brown fox " * 20)
    (folder / "bob.txt").write_text("ZZZZQQQQXXXX " * 40)  # 100 % unknown
    edge = "abcdefghi" * 40 + "Z" * 40  # 40 of 400 characters unknown: exactly the schema's 10 %
    (folder / "carol.txt").write_text(edge)
    config = load_config(None, ["data.source=text", f"data.path={folder}", f"data.schema={path}",
                                "data.partition=natural"])
    federated = build_federated(config.data, seed=0)
    names = {c.name for c in federated.clients}
    assert any("alice" in n for n in names) and any("carol" in n for n in names)
    assert not any("bob" in n for n in names)
    refused = [n for n in federated.notes if "refused by the schema" in n]
    assert len(refused) == 1 and "bob" in refused[0] and "outside the schema's vocabulary" in refused[0]
    (folder / "alice.txt").write_text("ZZZZ " * 80)
    (folder / "carol.txt").write_text("QQQQ " * 80)
    with pytest.raises(ConfigError, match="<unk> policy"):
        build_federated(config.data, seed=0)
