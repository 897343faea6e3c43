"""privfed.fl data: partitioners, the embedded stdlib-docstring dataset, user text/CSV loaders, synthetic series."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protocols.errors import ConfigError
from privfed.fl import partition
from privfed.fl.config import DataConfig
from privfed.fl.data import UNK, build_federated, build_vocab, tokenize
from privfed.fl.sources import DEFAULT_MODULES, stdlib_docstrings

torch.set_num_threads(1)


def _covers_once(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert np.array_equal(np.sort(joined), np.arange(n))


def test_iid_partition() -> None:
    parts = partition.iid(103, 10, np.random.default_rng(0))
    _covers_once(parts, 103)
    assert {len(p) for p in parts} == {10, 11}
    again = partition.iid(103, 10, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    with pytest.raises(ConfigError):
        partition.iid(3, 5, np.random.default_rng(0))


def test_natural_partition() -> None:
    keys = np.array([2, 0, 2, 1, 0, 2])
    parts = partition.natural(keys)
    assert [p.tolist() for p in parts] == [[1, 4], [3], [0, 2, 5]]


def _skew(parts: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean over non-empty clients of the largest label share."""
    shares = [np.bincount(labels[p]).max() / len(p) for p in parts if len(p)]
    return float(np.mean(shares))


def test_dirichlet_partition_covers_and_skews_with_alpha() -> None:
    labels = np.repeat(np.arange(10), 100)
    small = partition.dirichlet(labels, 10, 0.05, np.random.default_rng(1))
    large = partition.dirichlet(labels, 10, 100.0, np.random.default_rng(1))
    _covers_once(small, labels.size)
    _covers_once(large, labels.size)
    assert _skew(small, labels) > 0.6 > 0.3 > _skew(large, labels)
    with pytest.raises(ConfigError):
        partition.dirichlet(labels, 10, 0.0, np.random.default_rng(1))


def test_tokenize_and_vocab() -> None:
    assert tokenize("ab, c", "word") == ["ab", ",", "c"]
    vocab = build_vocab([list("abca")], "char", 99)
    assert vocab == (UNK, "a", "b", "c")
    words = build_vocab([["x", "y", "x", "z", "z", "z"]], "word", 3)
    assert words == (UNK, "x", "z")


def test_stdlib_docstrings_default_is_deterministic_and_non_iid() -> None:
    units = stdlib_docstrings(max_chars=5000)
    assert [name for name, _ in units] == list(DEFAULT_MODULES)
    assert all(len(text) > 1000 for _, text in units)
    config = DataConfig(max_chars_per_client=3000)
    a, b = build_federated(config, 0), build_federated(config, 0)
    assert len(a.clients) == len(DEFAULT_MODULES) and a.vocab[0] == UNK
    for ca, cb in zip(a.clients, b.clients):
        assert ca.name == cb.name and torch.equal(ca.train.inputs, cb.train.inputs)
    c = build_federated(config, 1)
    assert not torch.equal(a.clients[0].train.inputs, c.clients[0].train.inputs)  # the seed drives the split
    x, y = a.clients[0].train.inputs, a.clients[0].train.targets
    assert x.dtype == torch.int64 and x.shape == y.shape and x.shape[1] == config.seq_len
    assert torch.equal(x[:, 1:], y[:, :-1])  # next-token targets are the inputs shifted by one
    assert len(a.eval) > 0 and a.max_weight == max(len(cl.train) for cl in a.clients)
    # natural non-IID: character distributions differ between modules
    hist = [torch.bincount(cl.train.inputs.reshape(-1), minlength=len(a.vocab)).double() for cl in a.clients]
    assert not torch.allclose(hist[0] / hist[0].sum(), hist[1] / hist[1].sum(), atol=1e-3)


def test_iid_and_dirichlet_repartition_and_classification() -> None:
    iid = build_federated(DataConfig(max_chars_per_client=2000, partition="iid", clients=4), 0)
    assert len(iid.clients) == 4 and all(c.name.startswith("client-") for c in iid.clients)
    cls = build_federated(DataConfig(max_chars_per_client=2000, task="classification", partition="dirichlet",
                                     clients=4, alpha=0.3), 0)
    assert cls.classes == DEFAULT_MODULES and cls.eval.targets.ndim == 1
    assert int(cls.eval.targets.max()) < len(cls.classes)


def test_text_files_one_client_per_file(tmp_path) -> None:
    (tmp_path / "alice.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    (tmp_path / "bob.txt").write_text("lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 30)
    (tmp_path / "ignored.md").write_text("not text data")
    data = build_federated(DataConfig(source="text", path=str(tmp_path), seq_len=16, tokens="word",
                                      vocab_size=12, test_fraction=0.2), 0)
    assert [c.name for c in data.clients] == ["alice.txt", "bob.txt"]
    assert len(data.vocab) == 12 and data.vocab[0] == UNK
    single = build_federated(DataConfig(source="text", path=str(tmp_path / "bob.txt"), seq_len=16,
                                        test_fraction=0.2), 0)
    assert len(single.clients) == 1
    with pytest.raises(ConfigError, match="data.path"):
        build_federated(DataConfig(source="text", path=str(tmp_path / "nope")), 0)


def test_synthetic_series_client_specific() -> None:
    data = build_federated(DataConfig(source="synthetic-series", task="forecast", series_clients=3,
                                      series_length=120, seq_len=10, channels=2), 0)
    assert len(data.clients) == 3 and data.channels == 2
    x, y = data.clients[0].train.inputs, data.clients[0].train.targets
    assert x.shape[1:] == (10, 2) and y.shape[1:] == (2,) and x.dtype == torch.float32
    means = [float(c.train.inputs.std()) for c in data.clients]
    assert len(set(round(m, 4) for m in means)) == 3


def test_csv_series_by_key_column(tmp_path) -> None:
    lines = ["site,t,a,b"]
    for site in ("x", "y"):
        for t in range(60, 0, -1):  # unsorted on purpose: time_column orders the rows
            lines.append(f"{site},{t},{np.sin(t / 5):.4f},{t / 60:.4f}")
    path = tmp_path / "series.csv"
    path.write_text("\n".join(lines) + "\n")
    data = build_federated(DataConfig(source="csv", task="forecast", path=str(path), key_column="site",
                                      time_column="t", seq_len=8), 0)
    assert [c.name for c in data.clients] == ["x", "y"] and data.channels == 2
    b = torch.cat([data.clients[0].train.inputs[:, :, 1].reshape(-1)])
    assert torch.isfinite(b).all()
    with pytest.raises(ConfigError, match="data.key_column"):
        build_federated(DataConfig(source="csv", task="forecast", path=str(path), key_column="nope"), 0)
    path.write_text("site,a\nx,1\nx,oops\n")
    with pytest.raises(ConfigError, match="line 3"):
        build_federated(DataConfig(source="csv", task="forecast", path=str(path), key_column="site"), 0)
