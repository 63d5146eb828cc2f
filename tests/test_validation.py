"""Great Expectations suites: documents (ingest, dedup, filter...) and tokens, passing and failing."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import BaseModel, ConfigDict

from pipeline import validation
from pipeline.dataset import Dataset, ShardWriter, is_published
from pipeline.errors import ConfigError, ValidationFailed
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.schema import DOCUMENT_SCHEMA
from pipeline.stage import Phase, Stage, StageContext, run_stage
from pipeline.tokenize import TokenizeConfig, TokenizeStage
from pipeline.validation import val_fraction_bounds, validate_stage_output


class RowsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[tuple[str, str]] = []  # (id, text)


def write_rows(ctx: StageContext, _unit: int) -> dict:
    w = ctx.writer("data", DOCUMENT_SCHEMA, "part")
    w.write_rows([{"id": i, "text": t, "source": "test"} for i, t in ctx.config.texts])
    w.close()
    n = len(ctx.config.texts)
    return {"rows_in": n, "rows_out": n, "rejected": {}}


class RowsStage(Stage):
    """A document stage that publishes exactly the rows in its config: the suite's subject."""

    name = "rows"
    config_model = RowsConfig

    def phases(self):
        return [Phase("write", lambda ctx, _: [0], write_rows)]


def run_rows(root, texts, unique_ids=True):
    stage = RowsStage()
    stage.unique_ids = unique_ids
    return run_stage(stage, RowsConfig(texts=texts), root, {})


def results_by(report, expectation, column=None):
    return [
        r
        for r in report["results"]
        if r["expectation"] == expectation and (column is None or r["kwargs"].get("column") == column)
    ]


# -- documents --------------------------------------------------------------------------------------


def test_document_suite_passes_and_lands_in_the_manifest(tmp_path):
    res = run_rows(tmp_path, [("a", "one"), ("b", "two"), ("c", "three")])
    report = res.dataset.manifest["validation"]
    assert report["success"] and report["engine"].startswith("great_expectations")
    assert {s["suite"] for s in report["suites"]} == {"rows.schema", "rows.data"}
    (unique,) = results_by(report, "expect_column_values_to_be_unique", "id")
    assert unique["success"] and unique["unexpected"] == 0 and unique["rows"] == 3
    (count,) = results_by(report, "expect_table_row_count_to_equal")
    assert count["observed"] == 3
    json.dumps(report)  # plain JSON, ready for a table artifact


def test_duplicate_ids_fail_with_the_expectation_and_row_count(tmp_path):
    with pytest.raises(
        ValidationFailed, match=r"expect_column_values_to_be_unique\(column=id\): 2 of 3 rows fail"
    ):
        run_rows(tmp_path, [("a", "one"), ("a", "again"), ("c", "three")])
    assert not any(is_published(p) for p in (tmp_path / "datasets" / "rows").glob("*"))


def test_duplicate_ids_are_informational_where_the_stage_keeps_copies(tmp_path):
    res = run_rows(tmp_path, [("a", "one"), ("a", "one"), ("c", "three")], unique_ids=False)
    (unique,) = results_by(res.dataset.manifest["validation"], "expect_column_values_to_be_unique")
    assert not unique["success"] and unique["informational"] and unique["unexpected"] == 2


def test_blank_text_fails(tmp_path):
    with pytest.raises(ValidationFailed, match=r"column=text_nonblank, min_value=1\): 1 of 2 rows fail"):
        run_rows(tmp_path, [("a", "fine"), ("b", " \n\t ")])


def test_ingest_output_is_validated(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "same"}\n{"text": "same"}\n{"text": "other"}\n')
    res = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=str(src))]), tmp_path / "root", {})
    report = res.dataset.manifest["validation"]
    assert report["success"]
    (unique,) = results_by(report, "expect_column_values_to_be_unique")
    assert unique["informational"] and unique["unexpected"] == 2  # exact copies, left for dedup


def test_large_views_are_sampled_with_exact_global_checks(tmp_path, monkeypatch):
    monkeypatch.setattr(validation, "MAX_FRAME_ROWS", 2)
    with pytest.raises(ValidationFailed, match=r"rows.data.all_rows: .*duplicate_ids.*1 of 1 rows fail"):
        run_rows(tmp_path, [("a", "one"), ("b", "two"), ("c", "three"), ("a", "four")])
    res = run_rows(tmp_path / "ok", [("a", "one"), ("b", "two"), ("c", "three")])
    report = res.dataset.manifest["validation"]
    assert [s["sampled"] for s in report["suites"] if s["suite"] == "rows.data"] == [True]
    assert not results_by(report, "expect_table_row_count_to_equal")  # not claimed on a sample


# -- tokens -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    src = root / "in.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "text": f"document {i} " * (3 + i % 9)}) + "\n" for i in range(200)
        )
    )
    ingest = run_stage(
        IngestStage(), IngestConfig(sources=[SourceConfig(path=str(src), id_field="id")]), root, {}
    )
    cfg = TokenizeConfig(vocab_size=280, seq_len=8, val_fraction=0.2)
    return run_stage(TokenizeStage(), cfg, root, {"decontaminate": ingest.dataset}).dataset


def staged_copy(dataset: Dataset, tmp_path: Path):
    """A writable copy of a published tokenize version, as the validate step would see it staged."""
    staging = tmp_path / "staging"
    shutil.copytree(dataset.path, staging)
    ctx = SimpleNamespace(staging_dir=staging)
    return staging, ctx, json.loads(json.dumps(dataset.manifest))


def append_row(view: Path, table: pa.Table):
    pq.write_table(table, view / "zz-extra.parquet")


def test_token_suite_passes_on_stage_output(token_dataset):
    report = token_dataset.manifest["validation"]
    assert report["success"]
    names = {(r["suite"], r["expectation"], r["kwargs"].get("column")) for r in report["results"]}
    assert ("tokenize.data", "expect_column_values_to_be_between", "n_tokens") in names
    assert ("tokenize.docs", "expect_column_values_to_be_unique", "id") in names
    assert ("tokenize.docs", "expect_column_mean_to_be_between", "is_val") in names


def test_wrong_length_and_out_of_range_ids_fail(token_dataset, tmp_path):
    staging, ctx, manifest = staged_copy(token_dataset, tmp_path)
    vocab = manifest["totals"]["vocab_size"]
    bad = pa.table(
        {"split": ["train", "train"], "input_ids": pa.array([[1] * 5, [vocab] * 9], pa.list_(pa.uint16()))}
    )
    append_row(staging / "data", bad)
    with pytest.raises(ValidationFailed) as e:
        validate_stage_output(TokenizeStage(), ctx, manifest)
    msg = str(e.value)
    rows = manifest["totals"]["sequences_train"] + manifest["totals"]["sequences_val"] + 2
    assert f"column=n_tokens, min_value=9, max_value=9): 1 of {rows} rows fail" in msg
    assert f"column=max_id, min_value=0, max_value={vocab - 1}): 1 of {rows} rows fail" in msg
    assert "expect_table_row_count_to_equal" in msg


def test_null_rows_and_duplicate_doc_ids_fail(token_dataset, tmp_path):
    staging, ctx, manifest = staged_copy(token_dataset, tmp_path)
    docs = pq.read_table(next((staging / "docs").glob("*.parquet")))
    append_row(staging / "docs", docs.slice(0, 1))
    append_row(
        staging / "data",
        pa.table(
            {
                "split": pa.array([None], pa.string()),
                "input_ids": pa.array([list(range(9))], pa.list_(pa.uint16())),
            }
        ),
    )
    with pytest.raises(ValidationFailed) as e:
        validate_stage_output(TokenizeStage(), ctx, manifest)
    msg = str(e.value)
    assert "tokenize.docs: expect_column_values_to_be_unique(column=id): 2 of" in msg
    assert "tokenize.data: expect_column_values_to_not_be_null(column=split): 1 of" in msg


def test_val_fraction_out_of_bounds_fails(token_dataset, tmp_path):
    _, ctx, manifest = staged_copy(token_dataset, tmp_path)
    manifest["config"]["val_fraction"] = 0.5  # the data were split at 0.2
    with pytest.raises(ValidationFailed, match=r"expect_column_mean_to_be_between\(column=is_val"):
        validate_stage_output(TokenizeStage(), ctx, manifest)


def test_val_fraction_bounds_are_binomial():
    lo, hi = val_fraction_bounds(0.1, 10_000)
    assert 0.08 < lo < 0.1 < hi < 0.12
    lo, hi = val_fraction_bounds(0.1, 10)
    assert lo == 0.0 and hi > 0.4  # ten documents say little
    assert val_fraction_bounds(0.0, 100) == (0.0, 0.0)


# -- the two engines --------------------------------------------------------------------------------


def comparable(report):
    """Results keyed by suite, expectation and arguments (the engines may order them differently)."""
    return (
        sorted(json.dumps(r, sort_keys=True) for r in report["results"]),
        report["suites"],
        report["success"],
    )


def edge_case_suites(tmp_path):
    """Suites over rows with nulls, copies, values out of bounds and out of set, unequal pairs."""
    view = tmp_path / "edge"
    view.mkdir()
    pq.write_table(
        pa.table(
            {
                "id": ["a", "a", "b", None, "c", "c", "c", "d"],
                "n": [1, 5, None, 3, 9, 2, 2, 0],
                # Both null: skipped; one side null: GX's pandas engine raises on it, so not here.
                "m": [1, 5, None, 3, 9, 3, 2, 0],
                "split": ["train", "val", None, "train", "test", "val", "train", "train"],
                "ids": pa.array(
                    [[3, 1], [], None, [2, None], [None], [7], [0, 9, 4], [5]], pa.list_(pa.uint16())
                ),
            }
        ),
        view / "part-0.parquet",
    )
    files = [str(view / "part-0.parquet")]
    v = validation
    props = (v.column("id", "VARCHAR"), v.column("n", "BIGINT"), v.column("m", "BIGINT"))
    lists = (v.list_len("n_ids", "ids"), v.list_min("min_id", "ids"), v.list_max("max_id", "ids"))
    rows = v._rows(files, *props, v.column("split", "VARCHAR"), v.equals("is_val", "split", "val"), *lists)
    e = validation.expect
    checks = [
        e("column_values_to_not_be_null", column="id"),
        e("column_values_to_not_be_null", column="n"),
        e("column_values_to_be_unique", column="id"),
        e("column_values_to_be_between", column="n", min_value=1),
        e("column_values_to_be_between", column="n", min_value=1, max_value=5),
        e("column_values_to_be_between", column="n", max_value=2),
        e("column_values_to_be_in_set", column="split", value_set=["train", "val"]),
        e("column_pair_values_to_be_equal", column_A="n", column_B="m"),
        e("column_sum_to_be_between", column="n", min_value=22, max_value=22),
        e("column_sum_to_be_between", column="is_val", min_value=0, max_value=1),
        e("column_mean_to_be_between", column="is_val", min_value=0.2, max_value=0.5),
        e("column_mean_to_be_between", column="n", min_value=0, max_value=3),
        e("column_values_to_be_between", column="min_id", min_value=1),  # 0 once; [], null, [null]: null
        e("column_values_to_be_between", column="max_id", max_value=7),  # 9 once
        e("column_values_to_not_be_null", column="max_id"),
        e("column_values_to_be_between", column="n_ids", min_value=1),  # [] once
        e("table_row_count_to_equal", value=8),
        e("table_row_count_to_equal", value=7),
    ]
    return [
        validation.Suite("edge.data", rows, checks, informational={"expect_column_values_to_be_unique"}),
        validation.Suite(
            "edge.schema",
            validation.Rows([], columns=["id", "n", "extra"]),
            [
                e("table_columns_to_match_set", column_set=["id", "n"], exact_match=False),
                e("table_columns_to_match_set", column_set=["id", "n"]),  # exact by default
                e("table_columns_to_match_set", column_set=["id", "missing"], exact_match=False),
            ],
        ),
        validation.Suite(
            "edge.empty",
            validation._rows([], *props[:2]),
            [
                e("column_values_to_not_be_null", column="id"),
                e("column_values_to_be_between", column="n", min_value=1),
                e("table_row_count_to_equal", value=0),
                e("column_sum_to_be_between", column="n", min_value=0, max_value=0),
            ],
        ),
    ]


def run_everywhere(suites):
    """The suites in every engine: the duckdb engine's report, once the others are shown equal."""
    fast, arrow, gx = (validation.run_suites(suites, e) for e in ("duckdb", "arrow", "gx"))
    assert comparable(fast) == comparable(gx) == comparable(arrow)
    return fast


@pytest.mark.slow
def test_fast_engines_agree_with_great_expectations(token_dataset, tmp_path):
    """The duckdb and arrow engines are only faster ways to run GX's expectations: same results
    on edge cases and on stage outputs that pass and that fail."""
    suites = edge_case_suites(tmp_path)
    fast = run_everywhere(suites)
    assert fast["engine"].startswith("great_expectations") and "duckdb" in fast["engine"]
    assert "pyarrow" in validation.run_suites(suites, "arrow")["engine"]
    assert not fast["success"]
    failed = {(r["expectation"], r["unexpected"]) for r in fast["results"] if not r["success"]}
    assert ("expect_column_values_to_be_unique", 5) in failed  # a, a, c, c, c; the null skipped
    assert ("expect_column_pair_values_to_be_equal", 1) in failed  # 2 vs 3

    staging, _, manifest = staged_copy(token_dataset, tmp_path)
    append_row(
        staging / "data",
        pa.table({"split": [None, "x"], "input_ids": pa.array([[1] * 5, [9999] * 9], pa.list_(pa.uint16()))}),
    )
    docs = pq.read_table(next((staging / "docs").glob("*.parquet")))
    append_row(staging / "docs", docs.slice(0, 2))
    stage = TokenizeStage()
    suites = stage.validation_suites(staging, manifest)
    assert not run_everywhere(suites)["success"]

    view = tmp_path / "documents" / "data"
    view.mkdir(parents=True)
    rows = [
        {"id": "a", "text": "one", "source": "s"},
        {"id": "a", "text": " \n", "source": "s"},
        {"id": "b", "text": "", "source": "s"},
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), view / "part.parquet")
    suites = RowsStage().validation_suites(view.parent, {"counts": {"rows_out": 2}})
    assert not run_everywhere(suites)["success"]
    # Passing outputs too, and an empty view.
    assert run_everywhere(TokenizeStage().validation_suites(token_dataset.path, token_dataset.manifest))[
        "success"
    ]
    pq.write_table(DOCUMENT_SCHEMA.empty_table(), view / "part.parquet")
    assert run_everywhere(RowsStage().validation_suites(view.parent, {"counts": {"rows_out": 0}}))["success"]


def test_an_unknown_engine_is_a_config_error(monkeypatch):
    monkeypatch.setenv(validation.ENGINE_ENV, "pandas")
    with pytest.raises(ConfigError, match="TOKENMILL_VALIDATION_ENGINE"):
        validation.engine()


def rewrite_watched(files: list[Path], props) -> None:
    """Write each shard again through a ShardWriter whose watcher notes the gate's properties."""
    for f in files:
        table = pq.read_table(f)
        f.unlink()
        prefix = f.name.removesuffix(".parquet").rsplit("-", 1)[0]
        writer = ShardWriter(f.parent, table.schema, prefix, watch=validation.PropsAhead(props))
        writer.write(table)
        writer.close()
        assert f.exists()


def test_properties_noted_as_shards_are_written_are_used_only_for_unchanged_files(
    token_dataset, tmp_path, monkeypatch
):
    staging, ctx, manifest = staged_copy(token_dataset, tmp_path)
    data, docs = sorted((staging / "data").glob("*.parquet")), sorted((staging / "docs").glob("*.parquet"))
    rewrite_watched(data, validation.packed_props())
    rewrite_watched(docs, validation.doc_token_props())
    assert {f for f, _ in validation._EARLY} == {str(p) for p in data + docs}
    # Taken from the notes: no shard is read back.
    with monkeypatch.context() as m:
        m.setattr(validation, "_file_props", lambda *a: pytest.fail("a noted shard was read back"))
        assert validate_stage_output(TokenizeStage(), ctx, manifest) == token_dataset.manifest["validation"]
    assert not validation._EARLY  # taken by the validation

    # A shard changed after it was written is read again: the new row fails.
    rewrite_watched(data, validation.packed_props())
    table = pq.read_table(data[0])
    vocab = manifest["totals"]["vocab_size"]
    ids = table.column("input_ids").to_pylist()
    ids[0] = [vocab] * len(ids[0])
    pq.write_table(
        table.set_column(1, "input_ids", pa.array(ids, table.schema.field("input_ids").type)), data[0]
    )
    with pytest.raises(ValidationFailed, match=f"column=max_id, min_value=0, max_value={vocab - 1}"):
        validate_stage_output(TokenizeStage(), ctx, manifest)


def test_no_properties_are_noted_past_the_arrow_engines_limits(token_dataset, tmp_path, monkeypatch):
    staging, _, _ = staged_copy(token_dataset, tmp_path)
    docs = sorted((staging / "docs").glob("*.parquet"))
    monkeypatch.setattr(validation, "ARROW_MAX_ROWS", pq.ParquetFile(docs[0]).metadata.num_rows - 1)
    rewrite_watched(docs[:1], validation.doc_token_props())
    assert not validation._EARLY  # DuckDB validates such a view, reading it itself


@pytest.mark.parametrize("nulls", [False, True])
def test_list_min_and_max_in_arrow_equal_duckdbs(nulls):
    import duckdb

    lists = [[5, 2, 9], [], [7], [65535, 0], [3, 3], [], [1, 8, 4, 6]]
    if nulls:  # a null list and a null id: the general path, else the one between the offsets
        lists += [None, [2, None, 1]]
    whole = pa.array(lists * 3, pa.list_(pa.uint16()))
    # A slice's offsets do not start at 0; one chunk is taken as it is, two are joined.
    for arr in (whole, whole.slice(4, 11)):
        for chunks in ([arr], [arr.slice(0, 3), arr.slice(3)]):
            shard = pa.table({"ids": pa.chunked_array(chunks, arr.type)})
            props = (validation.list_min("lo", "ids"), validation.list_max("hi", "ids"))
            arrow = pa.table({p.name: p.arrow(shard) for p in props})
            with duckdb.connect() as con:
                want = con.execute("SELECT list_min(ids), list_max(ids) FROM shard").fetchall()
            assert list(zip(arrow.column("lo").to_pylist(), arrow.column("hi").to_pylist())) == want
        if not nulls:  # on the sliced array itself (joining chunks makes offsets start at 0)
            dense = [validation._list_reduce_dense(arr, how).to_pylist() for how in ("min", "max")]
            assert list(zip(*dense)) == want
