"""``privfed schema``: make the public task schema (vocabulary or channels and scaling, sequence length, model)
from public or agreed material, before any training. See :mod:`privfed.fl.schema`."""

from __future__ import annotations

import click

from protocols.errors import PrivfedError
from privfed.cli.common import console, fail

__all__ = ["schema"]


@click.command()
@click.option("--source", type=click.Choice(["text", "csv"]), required=True, help="Kind of data the nodes hold.")
@click.option("--path", "path", required=True, type=click.Path(exists=True),
              help="PUBLIC or jointly agreed material (a text file/folder of .txt, or a CSV): never a node's data.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Schema file to write (JSON).")
@click.option("--tokens", type=click.Choice(["char", "word"]), default="char", show_default=True)
@click.option("--vocab-size", type=int, default=2000, show_default=True, help="word tokens: words kept.")
@click.option("--max-unknown", type=float, default=0.05, show_default=True,
              help="Share of a node's tokens outside the vocabulary (<unk>) above which the node refuses.")
@click.option("--key-column", default="client", show_default=True, help="csv: the column naming the series.")
@click.option("--time-column", default="", help="csv: optional column to order rows by.")
@click.option("--seq-len", type=int, default=32, show_default=True)
@click.option("--val-fraction", type=float, default=0.1, show_default=True, help="Share each node holds out.")
@click.option("--max-weight", type=int, default=100000, show_default=True,
              help="Public bound on a node's training samples (its FedAvg weight is capped there).")
@click.option("--cell", type=click.Choice(["lstm", "gru"]), default="lstm", show_default=True)
@click.option("--layers", type=int, default=1, show_default=True)
@click.option("--hidden", type=int, default=64, show_default=True)
@click.option("--embedding", type=int, default=16, show_default=True)
def schema(source: str, path: str, out: str, tokens: str, vocab_size: int, max_unknown: float, key_column: str,
           time_column: str, seq_len: int, val_fraction: float, max_weight: int, cell: str, layers: int,
           hidden: int, embedding: int) -> None:
    """Write the public task schema a run passes with -c data.schema=PATH (in-process and over Flower)."""
    try:
        from privfed.fl.config import ModelConfig
        from privfed.fl.schema import schema_from_csv, schema_from_text

        model = ModelConfig(cell=cell, layers=layers, hidden=hidden, embedding=embedding)
        common = {"seq_len": seq_len, "model": model, "val_fraction": val_fraction, "max_weight": max_weight}
        made = (schema_from_text(path, tokens=tokens, vocab_size=vocab_size, max_unknown_fraction=max_unknown,
                                 **common) if source == "text"
                else schema_from_csv(path, key_column=key_column, time_column=time_column, **common))
        made.save(out)
    except PrivfedError as exc:
        fail(exc)
        return
    what = f"{len(made.vocab)} tokens ({made.tokens})" if source == "text" else f"channels {list(made.columns)}"
    console.print(f"schema {out}: {source}, {what}, seq_len {made.seq_len}, {made.model.cell.upper()} "
                  f"{made.model.layers}x{made.model.hidden}")
