"""The annotate and filter stages end to end on small ingested datasets (no Prefect)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.filter import AnnotateConfig, AnnotateStage, FilterConfig, FilterStage
from pipeline.filter.annotate import signal_columns
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.schema import DOCUMENT_SCHEMA
from pipeline.stage import run_stage

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"

GOOD = (
    "The history of the town goes back to the twelfth century, when a small group of farmers settled "
    "by the river. Over the years they built a mill and a church, and the village grew into a market town "
    "with a busy square. Today the old mill is a museum that tells the story of the people who lived and "
    "worked there. Visitors can walk along the river and see the stone bridge that was built in 1820. "
    "The town council has restored the square, and local shops sell bread and cheese from the farms nearby. "
    "In summer there is a festival with music and food, and many families come to enjoy the long evenings."
)
SPAM = "buy cheap pills now " * 60
SHORT = "Click here."
FRENCH = (
    "Le village se trouve au bord de la rivière et compte environ deux mille habitants. Les maisons "
    "anciennes entourent une place où se tient le marché chaque samedi. On y vend du pain, du fromage et "
    "des légumes des fermes voisines. L'église date du douzième siècle et le moulin a été transformé en "
    "musée. En été, une fête réunit les familles autour de la musique et de la cuisine locale."
)


def ingest(tmp_path: Path, texts: list[str], root: Path | None = None):
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    cfg = IngestConfig(sources=[SourceConfig(path=str(src), id_field="id")])
    return run_stage(IngestStage(), cfg, root or tmp_path / "root", {})


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("filter")
    pii_doc = GOOD + " Write to jane.roe@example.com or call 555-123-4567 for the guided tour."
    ds = ingest(tmp_path, [GOOD, SPAM, SHORT, FRENCH, pii_doc]).dataset
    result = run_stage(AnnotateStage(), AnnotateConfig(), tmp_path / "root", {"dedup": ds})
    return tmp_path, ds, result


def test_annotate_keeps_every_row_and_adds_signals(annotated):
    _, _, result = annotated
    assert result.counts["rows_in"] == result.counts["rows_out"] == 5
    table = pq.read_table(result.dataset.shard_paths()[0])
    assert table.column_names[: len(DOCUMENT_SCHEMA)] == DOCUMENT_SCHEMA.names
    assert table.column_names[len(DOCUMENT_SCHEMA) :] == [c.name for c in signal_columns(AnnotateConfig())]
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows["d0"]["lang"] == "en" and rows["d3"]["lang"] == "fr"
    assert rows["d1"]["gopher_top_2gram_char_frac"] > 0.2
    assert rows["d4"]["pii_email_count"] == 1 and rows["d4"]["pii_phone_count"] == 1


def test_filter_rejects_with_reason_and_redacts(annotated):
    tmp_path, _, ann = annotated
    result = run_stage(FilterStage(), FilterConfig(), tmp_path / "root", {"annotate": ann.dataset})
    c = result.counts
    assert c["rows_in"] == 5 and c["rows_out"] + c["rows_rejected"] == 5
    kept = pq.read_table(result.dataset.shard_paths()[0]).to_pylist()
    assert sorted(r["id"] for r in kept) == ["d0", "d4"]
    redacted = next(r["text"] for r in kept if r["id"] == "d4")
    assert "<EMAIL>" in redacted and "<PHONE>" in redacted and "example.com" not in redacted
    assert result.stats["pii_replaced"] == {"email": 1, "phone": 1}
    rejects = {r["id"]: r for r in pq.read_table(result.dataset.shard_paths("rejects")[0]).to_pylist()}
    assert rejects["d1"]["reason"].startswith("filter.gopher_repetition.")
    # "Click here." is one bigram: 10 of its 11 characters (Gopher checks repetition first)
    assert rejects["d2"]["reason"] == "filter.gopher_repetition.max_top_2gram_char_frac"
    assert rejects["d2"]["value"] == f"{10 / 11:.6g}" and rejects["d2"]["threshold"] == "0.2"
    assert rejects["d3"]["reason"] == "filter.gopher_quality.min_stop_words"  # English stop words
    report = result.path / "report"
    audit = json.loads((report / "bias.json").read_text())
    assert audit["dataset"]["before"]["docs"] == 5 and audit["dataset"]["after"]["docs"] == 2
    assert (report / "bias.png").stat().st_size > 0 and "Bias audit" in (report / "bias.md").read_text()


def test_threshold_change_reruns_only_filter(annotated):
    tmp_path, ds, ann = annotated
    again = run_stage(AnnotateStage(), AnnotateConfig(), tmp_path / "root", {"dedup": ds})
    assert again.cached and again.fingerprint == ann.fingerprint
    strict = run_stage(FilterStage(), FilterConfig(), tmp_path / "root", {"annotate": ann.dataset})
    no_quality = FilterConfig.model_validate({"gopher_quality": {"enabled": False}})
    lang = run_stage(FilterStage(), no_quality, tmp_path / "root", {"annotate": ann.dataset})
    assert lang.fingerprint != strict.fingerprint
    rejects = {r["id"]: r for r in pq.read_table(lang.dataset.shard_paths("rejects")[0]).to_pylist()}
    assert rejects["d3"]["reason"] == "filter.language.keep"
    assert rejects["d3"]["value"] == "fr" and rejects["d3"]["threshold"] == "en"
    any_lang = FilterConfig.model_validate({"gopher_quality": {"enabled": False}, "language": {"keep": []}})
    relaxed = run_stage(FilterStage(), any_lang, tmp_path / "root", {"annotate": ann.dataset})
    assert relaxed.counts["rows_out"] == lang.counts["rows_out"] + 1
    assert "filter.language.keep" not in relaxed.counts["rejected_by_reason"]


def test_outputs_are_byte_identical_across_runs(tmp_path):
    shas = []
    for run in ("a", "b"):
        d = tmp_path / run
        ds = ingest(tmp_path, [GOOD, SPAM, FRENCH], d / "root").dataset
        ann = run_stage(AnnotateStage(), AnnotateConfig(), d / "root", {"dedup": ds})
        out = run_stage(FilterStage(), FilterConfig(), d / "root", {"annotate": ann.dataset})
        shas.append(
            [[s["sha256"] for s in r.dataset.manifest["views"]["data"]["shards"]] for r in (ann, out)]
        )
        shas[-1].append((out.path / "report" / "bias.png").read_bytes())
    assert shas[0] == shas[1]


def test_domain_score_prefers_target_like_documents(tmp_path):
    target = tmp_path / "target.jsonl"
    target.write_text(
        json.dumps({"text": "The mill by the river and the stone bridge of the market town."}) + "\n"
    )
    ds = ingest(tmp_path, [GOOD, SPAM, FRENCH]).dataset
    cfg = AnnotateConfig(domain_target=str(target), language=False, toxicity=False, bias=False, pii=False)
    ann = run_stage(AnnotateStage(), cfg, tmp_path / "root", {"dedup": ds})
    scores = dict(
        zip(*pq.read_table(ann.dataset.shard_paths()[0], columns=["id", "domain_score"]).to_pydict().values())
    )
    assert scores["d0"] > scores["d1"] and scores["d0"] > scores["d2"]
    keep_top = FilterConfig.model_validate(
        {
            "domain": {"keep_top_fraction": 0.3},
            "gopher_quality": {"enabled": False},
            "gopher_repetition": {"enabled": False},
            "c4": {"enabled": False},
            "fineweb": {"enabled": False},
            "language": {"enabled": False},
        }
    )
    out = run_stage(FilterStage(), keep_top, tmp_path / "root", {"annotate": ann.dataset})
    assert out.counts["rows_out"] == 1 and out.counts["rejected_by_reason"] == {
        "filter.domain.keep_top_fraction": 2
    }


def test_language_id_accuracy_on_shared_paragraphs():
    path = CORPORA / "multilingual" / "udhr_24lang_paragraphs.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not present (shared corpora live beside the repo)")
    from pipeline.filter.langid import classify, resolve_backend

    recs = [json.loads(line) for line in path.open()][::4]
    recs = [r for r in recs if len(r["text"]) >= 100]
    backend = resolve_backend(AnnotateConfig().langid_backend)
    langs, _ = classify([r["text"] for r in recs], backend=backend)
    accuracy = sum(p == r["lang"].split("-")[0] for p, r in zip(langs, recs)) / len(recs)
    assert accuracy >= (0.98 if backend == "fasttext" else 0.95)


def test_filter_removes_c4_lines_and_lists_them(tmp_path):
    menu = "Home\nAbout us\nPlease enable JavaScript in your browser to continue.\n"
    footer = "\nThis site uses cookies to improve your experience.\nCopyright"
    only_short = "Home\nAbout\nContact us"
    ds = ingest(tmp_path, [menu + GOOD + footer, only_short]).dataset
    quality = AnnotateConfig(language=False, toxicity=False, pii=False, bias=False)
    ann = run_stage(AnnotateStage(), quality, tmp_path / "root", {"dedup": ds})
    cfg = FilterConfig.model_validate(
        {
            "gopher_quality": {"enabled": False},
            "gopher_repetition": {"enabled": False},
            "fineweb": {"enabled": False},
            "c4": {"min_sentences": None},
            "report": False,
        }
    )
    out = run_stage(FilterStage(), cfg, tmp_path / "root", {"annotate": ann.dataset})
    assert out.counts["rows_out"] == 1
    assert out.counts["rejected_by_reason"] == {"filter.c4.remove_lines": 1}  # nothing of it was left
    row = pq.read_table(out.dataset.shard_paths()[0]).to_pylist()[0]
    assert row["text"] == GOOD
    gone = [(g["line"], g["rule"]) for g in row["c4_removed_lines"]]
    assert gone == [
        (0, "no_terminal_punct"), (1, "no_terminal_punct"), (2, "javascript"), (4, "policy"),
        (5, "no_terminal_punct"),
    ]  # fmt: skip
    assert out.stats["c4_lines_removed"] == {"javascript": 1, "no_terminal_punct": 3, "policy": 1}
    assert out.stats["c4_chars_removed"]["policy"] == len(
        "This site uses cookies to improve your experience."
    )
    assert out.stats["c4_docs_cleaned"] == 1
    reject = pq.read_table(out.dataset.shard_paths("rejects")[0]).to_pylist()[0]
    assert reject["text"] == only_short and reject["value"] == "3"
    keep_lines = FilterConfig.model_validate(
        {**cfg.model_dump(), "c4": {"min_sentences": None, "remove_lines": False}}
    )
    unchanged = run_stage(FilterStage(), keep_lines, tmp_path / "root", {"annotate": ann.dataset})
    assert unchanged.counts["rows_out"] == 2 and "c4_lines_removed" not in unchanged.stats


def test_bias_chart_draws_one_row_per_group_and_both_bars(tmp_path):
    from PIL import Image

    from pipeline.filter.report import plot

    groups = {"gender/female": {"share_of_category": 0.5}, "gender/male": {"share_of_category": 1.0}}
    plot({"dataset": {"before": {"groups": groups}, "after": {"groups": {}}}}, tmp_path / "two.png")
    one = {"gender/male": {"share_of_category": 0.0}}
    plot({"dataset": {"before": {"groups": one}, "after": {"groups": one}}}, tmp_path / "one.png")
    two, single = Image.open(tmp_path / "two.png"), Image.open(tmp_path / "one.png")
    assert two.height > single.height
    # Below the legend: the "before" bars (blue) are drawn, and "after" (orange) has none.
    bars = {c for _, c in two.convert("RGB").crop((0, 60, two.width, two.height)).getcolors(1 << 20)}
    assert (31, 119, 180) in bars and (255, 127, 14) not in bars
