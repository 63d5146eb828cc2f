"""benchmarks/finetune_transfer.py reads any labeled CSV/TSV: (label, sentence) or (sentence, label)."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from benchmarks.finetune_transfer import parse_budgets, sniff_layout
from pipeline.labeled.config import LabeledConfig
from pipeline.labeled.stage import LabeledStage
from pipeline.stage import run_stage

ROWS = [
    (f"The {thing} was {adj}, and I would {verb} it again.", label)
    for thing in ("phone", "film", "meal", "book", "room")
    for adj, verb, label in (("great", "buy", "positive"), ("awful", "never buy", "negative"))
]


def _write(path: Path, rows: list[tuple[str, str]], header: list[str] | None, label_first: bool) -> None:
    ordered = [(lab, text) if label_first else (text, lab) for text, lab in rows]
    with open(path, "w", encoding="utf-8", newline="") as f:
        if path.suffix == ".csv":
            w = csv.writer(f)
            if header:
                w.writerow(header)
            w.writerows(ordered)
        else:
            if header:
                f.write("\t".join(header) + "\n")
            f.writelines(f"{a}\t{b}\n" for a, b in ordered)


@pytest.mark.parametrize(
    ("name", "header", "label_first"),
    [
        ("reviews.csv", ["sentence", "label"], False),
        ("reviews.tsv", ["label", "sentence"], True),
        ("reviews.txt", ["reviews", "sentiment"], False),  # the UCI files' layout
        ("bare.csv", None, True),
    ],
)
def test_labeled_files_in_either_column_order_are_read_whole(tmp_path, name, header, label_first):
    path = tmp_path / name
    _write(path, ROWS, header, label_first)
    layout = sniff_layout(path)
    assert layout.header is (header is not None)
    assert layout.columns == (["label", "text"] if label_first else ["text", "label"])
    result = run_stage(LabeledStage(), LabeledConfig(sources=[layout]), tmp_path / "root", {})
    assert result.counts["rows_out"] == len(ROWS) and result.counts["rows_rejected"] == 0
    table = pq.read_table(result.dataset.data_path).to_pylist()
    assert sorted(r["text"] for r in table) == sorted(text for text, _ in ROWS)
    assert {r["label"] for r in table} == {"positive", "negative"}


def test_budgets_parse_and_bad_ones_are_refused():
    assert parse_budgets("8,32,128,all") == [8, 32, 128, "all"]
    with pytest.raises(SystemExit, match="'0'"):
        parse_budgets("8,0")
