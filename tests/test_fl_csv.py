"""Real CSV exports: the air-quality shape (row numbers, text wind direction, NA tokens, blank cells, stations),
value/categorical/target columns, each missing-value policy, ISO times, and every rejection naming file, line,
column and value. Plus a structure-aware fuzzer: any CSV built from messy cells either loads or raises ConfigError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.errors import ConfigError
from privfed.fl.config import DataConfig
from privfed.fl.data import build_federated
from privfed.fl.tabular import fill_missing, parse_time
from userdata_fixtures import air_quality_csv

torch.set_num_threads(1)

AIR = dict(source="csv", task="forecast", key_column="station", time_column="No", seq_len=8)


def _air(tmp_path: Path, **kwargs) -> tuple[Path, DataConfig]:
    path = air_quality_csv(tmp_path / "air.csv", hours=120)
    return path, DataConfig(path=str(path), **{**AIR, **kwargs})


def test_air_quality_export_loads_with_ffill_and_notes_what_it_left_out(tmp_path: Path) -> None:
    _, config = _air(tmp_path, missing="ffill")
    data = build_federated(config, 0)
    assert [c.name for c in data.clients] == ["Aotizhongxin", "Changping", "Dingling"]
    # year, month, day, hour, 6 pollutants, 5 weather columns, WSPM: No is the time column, wd is text
    assert data.channels == 15 and data.target_names == ("year", "month", "day", "hour", "PM2.5", "PM10", "SO2",
                                                          "NO2", "CO", "O3", "TEMP", "PRES", "DEWP", "RAIN", "WSPM")
    assert any("'wd' is not numeric" in n and "line 2" in n for n in data.notes)
    assert any("missing cells filled" in n for n in data.notes)
    assert torch.isfinite(data.eval.inputs).all() and torch.isfinite(data.eval.targets).all()


def test_missing_error_names_file_line_column_and_value(tmp_path: Path) -> None:
    path, config = _air(tmp_path)  # data.missing = "error" is the default
    with pytest.raises(ConfigError) as info:
        build_federated(config, 0)
    message = str(info.value)
    line = int(message.split(" line ")[1].split(",")[0])
    column = message.split("column '")[1].split("'")[0]
    row = path.read_text().splitlines()[line - 1].split(",")
    header = path.read_text().splitlines()[0].split(",")
    assert str(path) in message and row[header.index(column)] in ("NA", "")
    assert repr(row[header.index(column)]) in message


def test_categorical_columns_are_one_hot_and_targets_select_columns(tmp_path: Path) -> None:
    _, config = _air(tmp_path, missing="ffill", categorical_columns=("wd",), target_columns=("PM2.5", "NO2"))
    data = build_federated(config, 0)
    assert data.channels == 15 + 10 and data.target_names == ("PM2.5", "NO2")
    assert data.eval.targets.shape[1] == 2 and data.output_size == 2
    onehot = data.clients[0].train.inputs[:, :, 15:]
    assert torch.equal(onehot.sum(dim=-1), torch.ones(onehot.shape[:2]))  # exactly one wind direction a step
    assert data.eval.scale is not None and data.eval.scale.std.shape == (2,)
    with pytest.raises(ConfigError, match="data.target_columns"):
        build_federated(DataConfig(path=config.path, **{**AIR, "missing": "ffill", "target_columns": ("nope",)}), 0)


def test_drop_counts_rows_and_value_columns_restrict(tmp_path: Path) -> None:
    _, config = _air(tmp_path, missing="drop", value_columns=("PM2.5", "TEMP"))
    data = build_federated(config, 0)
    assert data.channels == 2
    assert any("rows dropped" in n for n in data.notes)
    with pytest.raises(ConfigError, match="data.value_columns: column 'PM25'"):
        build_federated(DataConfig(path=config.path, **{**AIR, "value_columns": ("PM25",)}), 0)


def test_interpolate_and_ffill_exact_values() -> None:
    values = np.array([[np.nan, 0.0], [1.0, np.nan], [np.nan, 1.0], [3.0, np.nan]])
    cat = np.array([False, True])
    assert np.array_equal(fill_missing(values, cat, "interpolate", "u", ["a", "w"]),
                          [[1, 0], [1, 0], [2, 1], [3, 1]])  # categoricals forward-filled, leading gap backward
    assert np.array_equal(fill_missing(values, cat, "ffill", "u", ["a", "w"]), [[1, 0], [1, 0], [1, 1], [3, 1]])
    with pytest.raises(ConfigError, match="series 'u' has no value at all in column 'a'"):
        fill_missing(np.full((3, 1), np.nan), np.array([False]), "ffill", "u", ["a"])


def test_iso_time_orders_rows_and_bad_time_is_named(tmp_path: Path) -> None:
    path = tmp_path / "iso.csv"
    rows = ["client,when,v"] + [f"a,2024-01-01T{h:02d}:00:00,{h}" for h in range(23, -1, -1)]
    path.write_text("\n".join(rows) + "\n")
    config = DataConfig(source="csv", task="forecast", path=str(path), time_column="when", seq_len=4)
    data = build_federated(config, 0)
    x = torch.cat([data.clients[0].train.inputs, data.eval.inputs])
    steps = x[:, 1:, 0] - x[:, :-1, 0]
    assert torch.allclose(steps, steps[0, 0].expand_as(steps))  # increasing hour by hour after sorting
    assert parse_time("2024-01-01", "f line 2", "when") == parse_time("1704067200", "f line 2", "when")
    path.write_text("client,when,v\na,yesterday,1\n")
    with pytest.raises(ConfigError, match=r"line 2, column 'when': value 'yesterday'"):
        build_federated(config, 0)


@pytest.mark.parametrize("text, match", [
    ("client,v\na,1\na,oops\na,3\n", r"line 3, column 'v': value 'oops' is not a finite number"),
    ("client,v\na,1,2\n", r"line 2: 3 fields, the header has 2"),
    ("client,v,v\na,1,2\n", "duplicate column names"),
    ("", "empty"),
    ("client,v\n", "no data rows"),
    ("client,v\na,inf\na,1\n", r"value 'inf' is not a finite number"),
    ("client,w\na,x\na,y\n", "no numeric feature columns"),
])
def test_bad_csvs_raise_clear_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        build_federated(DataConfig(source="csv", task="forecast", path=str(path), seq_len=2), 0)


def test_folder_of_station_files_and_header_mismatch(tmp_path: Path) -> None:
    folder = tmp_path / "stations"
    folder.mkdir()
    for k, station in enumerate(("A", "B")):
        air_quality_csv(folder / f"{station}.csv", stations=(station,), hours=60, seed=k)
    data = build_federated(DataConfig(path=str(folder), **{**AIR, "missing": "ffill"}), 0)
    assert [c.name for c in data.clients] == ["A", "B"]
    (folder / "C.csv").write_text("station,No,x\nC,1,2\n")
    with pytest.raises(ConfigError, match=r"C.csv line 1: header"):
        build_federated(DataConfig(path=str(folder), **{**AIR, "missing": "ffill"}), 0)


CELLS = st.sampled_from(["", " ", "NA", "nan", "N/A", "null", "1", "-2.5", "1e3", "x", "NW", "inf", "2024-01-01",
                         "\"a,b\"", "0"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(CELLS, min_size=3, max_size=4), min_size=1, max_size=12),
       missing=st.sampled_from(["error", "drop", "ffill", "interpolate"]))
def test_fuzzed_messy_csvs_load_or_raise_config_error(tmp_path: Path, rows: list[list[str]], missing: str) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_text("client,t,a\n" + "\n".join(",".join(r) for r in rows) + "\n")
    config = DataConfig(source="csv", task="forecast", path=str(path), time_column="t", seq_len=2, missing=missing)
    try:
        data = build_federated(config, 0)
    except ConfigError as exc:
        assert str(exc)
        return
    for client in data.clients:  # a run never starts on data it misread: every loaded value is finite
        assert torch.isfinite(client.train.inputs).all() and torch.isfinite(client.train.targets).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(source="csv", path="x.csv", task="forecast", missing="guess"), "data.missing must be one of"),
    (dict(source="csv", path="x.csv", task="classification", sequence_column="s"), "data.label_column is required"),
    (dict(source="csv", path="x.csv", task="classification", label_column="y"), "exactly one"),
    (dict(source="csv", path="x.csv", task="classification", label_column="y", sequence_column="s",
          text_column="t"), "exactly one"),
    (dict(source="csv", path="x.csv", task="next-token"), "data.task must be one of"),
    (dict(source="csv", path="x.csv", task="forecast", value_columns=("client", "v")), "already used as key"),
    (dict(source="csv", path="x.csv", task="forecast", value_columns=("v",), target_columns=("w",)),
     "not in data.value_columns"),
    (dict(source="leaf", task="next-token"), "data.path is required"),
    (dict(source="leaf", path="x.json", task="forecast"), "data.task must be one of"),
])
def test_bad_data_configs_name_the_key(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataConfig(**kwargs)


def test_station_files_joined_with_cat_keep_their_headers_out(tmp_path: Path) -> None:
    parts = [air_quality_csv(tmp_path / f"{s}.csv", stations=(s,), hours=50, seed=k).read_text()
             for k, s in enumerate(("A", "B", "C"))]
    joined = tmp_path / "all.csv"
    joined.write_text("".join(parts))  # cat A.csv B.csv C.csv: headers repeated mid-file
    data = build_federated(DataConfig(path=str(joined), **{**AIR, "missing": "ffill"}), 0)
    assert [c.name for c in data.clients] == ["A", "B", "C"]
    assert any("2 repeated header lines skipped" in n for n in data.notes)
