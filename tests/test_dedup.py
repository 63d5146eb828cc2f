"""The dedup stage on small generated corpora: rules, rejects, determinism, incremental runs."""

from __future__ import annotations

import json
import random
import sys
import unicodedata
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pipeline.dataset import Dataset
from pipeline.dedup import DedupConfig, DedupStage, SpanConfig, summary_markdown
from pipeline.dedup.clusters import UnionFind
from pipeline.dedup.config import NormalizeConfig
from pipeline.dedup.lsh import choose_bands, match_probability
from pipeline.dedup.minhash import (
    EMPTY,
    MinHasher,
    Shingles,
    document_keys,
    estimate_jaccard,
    jaccard,
    resolve_backend,
    word_hashes,
)
from pipeline.dedup.normalize import fold_collapse, fold_words
from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig, SourceConfig
from pipeline.ingest.stage import IngestStage
from pipeline.stage import run_stage

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
VOCAB = [f"w{i}x" for i in range(3000)]


def doc(rng: random.Random, n: int = 150) -> str:
    words = [rng.choice(VOCAB) for _ in range(n)]
    return " ".join(words[:60]) + ".\n" + " ".join(words[60:]) + "."


def edit(rng: random.Random, text: str, k: int) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), k):
        words[i] = rng.choice(VOCAB) + "q"
    return " ".join(words)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def ingest(root: Path, source: Path):
    cfg = IngestConfig(sources=[SourceConfig(path=str(source), id_field="id")], shard_rows=25)
    return run_stage(IngestStage(), cfg, root, {})


def dedup(root: Path, ing, **cfg):
    return run_stage(DedupStage(), DedupConfig(**cfg), root, {"ingest": ing.dataset})


def rejects(result) -> list[dict]:
    glob = result.path / "rejects" / "*.parquet"
    return (
        duckdb.sql(f"SELECT * FROM read_parquet('{glob}') ORDER BY source_record")
        .to_arrow_table()
        .to_pylist()
    )


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict]:
    """60 distinct documents plus: 2 folded exact copies, 2 near copies, 1 reused id."""
    rng = random.Random(7)
    recs = [{"id": f"d{i}", "text": doc(rng)} for i in range(60)]
    recs.append({"id": "copy1", "text": "  " + recs[3]["text"].upper().replace(".", " !") + "\n"})
    recs.append({"id": "copy2", "text": recs[3]["text"]})
    recs.append({"id": "near1", "text": edit(rng, recs[10]["text"], 2)})
    recs.append({"id": "near2", "text": edit(rng, recs[20]["text"], 1)})
    recs.append({"id": "d5", "text": doc(rng)})  # an id already used, with unrelated text
    return write_jsonl(tmp_path / "src" / "a.jsonl", recs), {r["id"]: r["text"] for r in recs}


def test_rules_rejects_and_counts(tmp_path, corpus):
    src, texts = corpus
    ing = ingest(tmp_path / "root", src)
    res = dedup(tmp_path / "root", ing)
    c = res.counts
    assert c["rows_in"] == 65 and c["rows_out"] == 60
    assert c["rejected_by_reason"] == {"dedup.exact": 2, "dedup.near_duplicate": 2, "dedup.duplicate_id": 1}
    by_id = {}
    for r in rejects(res):
        by_id.setdefault(r["id"], r)
    assert by_id["copy1"]["reason"] == "dedup.exact" and by_id["copy1"]["duplicate_of"] == "d3"
    assert by_id["near1"]["duplicate_of"] == "d10" and by_id["near2"]["duplicate_of"] == "d20"
    detail = json.loads(by_id["near1"]["detail"])
    assert detail["cluster_size"] == 2 and 0.8 <= detail["jaccard_est"] <= 1.0
    assert by_id["near1"]["threshold"] == "0.8"
    dup_id = [r for r in rejects(res) if r["reason"] == "dedup.duplicate_id"]
    assert dup_id[0]["id"] == "d5" and dup_id[0]["source_record"] == 65
    data = Dataset(res.path)
    ids = [i for b in data.iter_batches(columns=["id"]) for i in b.column("id").to_pylist()]
    assert sorted(ids) == sorted(f"d{i}" for i in range(60))
    # the index view holds the kept documents' signatures for later versions
    assert data.num_rows("index") == 60
    stats = res.stats
    assert stats["by_rule"]["dedup.exact"]["docs"] == 2
    assert stats["exact"]["group_size_histogram"] == {"3-4": 1}
    assert stats["near"]["cluster_size_histogram"] == {"2": 2}
    assert stats["by_source"]["a"]["rows_in"] == 65
    assert not (res.path / "work").exists()
    md = summary_markdown(stats)
    assert "| dedup.near_duplicate | 2 |" in md and "Largest near-duplicate clusters" in md
    members = {m["id"]: m["snippet"] for c in stats["near"]["largest_clusters"] for m in c["members"]}
    assert set(members) == {"d10", "near1", "d20", "near2"}
    assert all(members[k] == " ".join(texts[k].split())[:160] for k in members)


def test_exact_verification_and_switches(tmp_path, corpus):
    src, _ = corpus
    ing = ingest(tmp_path / "root", src)
    res = dedup(tmp_path / "root", ing, verify="exact")
    near = [r for r in rejects(res) if r["reason"] == "dedup.near_duplicate"]
    assert len(near) == 2 and all(json.loads(r["detail"])["jaccard"] >= 0.8 for r in near)
    # A threshold above the copies' similarity keeps them; exact copies still go.
    strict = dedup(tmp_path / "root", ing, verify="exact", threshold=0.99)
    assert "dedup.near_duplicate" not in strict.counts["rejected_by_reason"]
    off = dedup(tmp_path / "root", ing, exact=False, near=False)
    # Without exact dedup the verbatim copy shares d3's content, not its id: only ids are checked.
    assert off.counts["rejected_by_reason"] == {"dedup.duplicate_id": 1}


def test_deterministic_bytes(tmp_path, corpus):
    src, _ = corpus
    digests = []
    for root in (tmp_path / "r1", tmp_path / "r2"):
        res = dedup(root, ingest(root, src))
        m = Dataset(res.path).manifest
        digests.append({v: [s["sha256"] for s in e["shards"]] for v, e in m["views"].items()})
        assert res.fingerprint == dedup(root, ingest(root, src)).fingerprint  # a cache hit
    assert digests[0] == digests[1]
    assert len(digests[0]["data"]) == 3  # one output shard per input shard of 25 rows


def test_incremental_never_readmits(tmp_path, corpus):
    src, texts = corpus
    root = tmp_path / "root"
    first = dedup(root, ingest(root, src.parent))  # the folder: a later file joins the series
    rng = random.Random(99)
    later = [
        {"id": "again", "text": texts["d7"].lower()},  # exact copy of an accepted document
        {"id": "near3", "text": edit(rng, texts["d30"], 1)},  # near copy of an accepted one
        {"id": "d8", "text": doc(rng)},  # reuses an accepted id
        {"id": "fresh", "text": doc(rng)},
        {"id": "copy_of_dropped", "text": texts["near1"]},  # a copy of a rejected near-dup
    ]
    write_jsonl(src.parent / "b.jsonl", later)
    ing2 = ingest(root, src.parent)
    assert ing2.dataset.parent is not None and ing2.counts["rows_in"] == 5
    second = dedup(root, ing2)
    assert Dataset(second.path).parent.path == first.path
    got = {r["id"]: (r["reason"], r["duplicate_of"]) for r in rejects(second)}
    assert got["again"] == ("dedup.exact", "d7")
    assert got["near3"] == ("dedup.near_duplicate", "d30")
    assert got["d8"] == ("dedup.duplicate_id", "d8")
    assert got["copy_of_dropped"][1] == "d10"
    assert second.counts["rows_out"] == 1 and second.stats["generation"] == 1
    # A cluster's snippets come from this version's texts and from earlier versions' alike.
    clusters = second.stats["near"]["largest_clusters"]
    want = {
        "d30": texts["d30"],
        "near3": later[1]["text"],
        "d10": texts["d10"],
        "copy_of_dropped": texts["near1"],
    }
    assert {m["id"]: m["snippet"] for c in clusters for m in c["members"]} == {
        k: " ".join(t.split())[:160] for k, t in want.items()
    }


def test_repeated_spans(tmp_path):
    rng = random.Random(3)
    banner = "Accept all cookies to continue browsing"
    recs = [{"id": f"s{i}", "text": f"{doc(rng)}\n{banner}" if i < 6 else doc(rng)} for i in range(12)]
    recs.append({"id": "only", "text": "ACCEPT all cookies, to continue browsing!"})
    src = write_jsonl(tmp_path / "s.jsonl", recs)
    ing = ingest(tmp_path / "root", src)
    res = dedup(tmp_path / "root", ing, spans=SpanConfig(enabled=True, min_docs=5))
    assert res.counts["rejected_by_reason"] == {"dedup.empty_after_spans": 1}
    sp = res.stats["spans"]
    assert sp["frequent_spans"] == 1 and sp["spans_removed"] == 7 and sp["docs_changed"] == 7
    texts = [
        t for b in Dataset(res.path).iter_batches(columns=["text"]) for t in b.column("text").to_pylist()
    ]
    assert not any("cookies" in t for t in texts)
    off = dedup(tmp_path / "root", ing)
    assert off.counts["rows_out"] == 13


def test_fold_collapse():
    texts = pa.array(["  Hello,   World!\n foo\tbar  ", "", "Ünïcode “quotes” — ok", "a\u00a0b", None])
    col = fold_collapse(texts, NormalizeConfig())
    assert [col.doc_bytes(i).decode() for i in range(len(col))] == [
        "hello world foo bar",
        "",
        "ünïcode quotes ok",
        "a b",
        "",
    ]
    keep = fold_collapse(texts, NormalizeConfig(lowercase=False, punctuation=False))
    assert keep.doc_bytes(0).decode() == "Hello, World! foo bar"


def test_shingles_and_estimator():
    col = fold_words(pa.array(["a b c d e f", "x a b c d e f", "a b", ""]), NormalizeConfig())
    sh = MinHasher(16, 5, "word").shingles(col)
    assert [len(sh.of(i)) for i in range(4)] == [2, 3, 1, 0]
    assert set(sh.of(0)) <= set(sh.of(1))  # shingle hashes do not depend on position
    chars = MinHasher(16, 3, "char").shingles(col)
    assert [len(chars.of(i)) for i in range(4)] == [9, 11, 1, 0]
    # The estimate is unbiased with the textbook spread sqrt(J(1-J)/K).
    rng = np.random.default_rng(0)
    m = MinHasher(112, 5, seed=3)
    est = []
    for _ in range(200):
        u = rng.integers(0, 2**63, 300, dtype=np.uint64)
        a, b = u[:240], u[60:]  # |A∩B| = 180, |A∪B| = 300: J = 0.6
        s = m.signatures(Shingles(np.concatenate([a, b]), np.repeat([0, 1], [240, 240]), 2))
        est.append(estimate_jaccard(s[:1], s[1:])[0])
    assert jaccard(a, b) == pytest.approx(0.6)
    assert abs(np.mean(est) - 0.6) < 0.01 and abs(np.std(est) - np.sqrt(0.24 / 112)) < 0.01


def _folded_by_hand(text: str | None, punctuation: bool) -> str:
    """The comparison form, one character at a time: what fold_collapse computes in bulk."""
    out = []
    for c in (text or "").lower():
        cls = unicodedata.category(c)[0]
        if c.isascii():
            sep = c in " \t\n\v\f\r" or (punctuation and not c.isalnum() and c.isprintable())
        else:
            sep = cls == "Z" or (punctuation and cls in "PS")
        out.append(" " if sep else c)
    return " ".join("".join(out).split(" ")).strip() if out else ""


def test_fold_collapse_matches_a_character_loop():
    pieces = [
        "",
        " ",
        "  ",
        "a",
        "Word",
        ",",
        "...",
        "\u00a0",
        "\u2014",
        "\u201cq\u201d",
        "\u00e9t\u00e9",
        "\U0001f600",
        "\u65e5\u672c",
        "\n\n",
        "\t",
        "x-y",
        "A.B",
        "\u3000",
        "\u00bf",
        "9",
    ]
    rng = random.Random(5)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(400)]
    texts += [None, "", "!!", " a ", "a"]
    for punctuation in (True, False):
        col = fold_collapse(pa.array(texts), NormalizeConfig(punctuation=punctuation))
        got = [col.doc_bytes(i).decode() for i in range(len(col))]
        want = [" ".join(w for w in _folded_by_hand(t, punctuation).split(" ") if w) for t in texts]
        assert got == want


def test_word_shingles_do_not_depend_on_the_batch():
    rng = random.Random(11)
    texts = [
        " ".join(rng.choice(VOCAB) for _ in range(rng.choice([0, 1, 3, 4, 5, 9, 40]))) for _ in range(60)
    ]
    m = MinHasher(32, 5)
    batch = m.shingles(fold_words(pa.array(texts), NormalizeConfig()))
    for i, t in enumerate(texts):
        alone = m.shingles(fold_words(pa.array([t]), NormalizeConfig()))
        assert np.array_equal(batch.of(i), alone.of(0))
        words = t.split()
        assert len(alone.of(0)) == (max(len(words) - 4, 1) if words else 0)
    sig = m.signatures(batch)
    assert all((sig[i] == EMPTY).all() == (not t) for i, t in enumerate(texts))


def test_word_hashes_and_document_keys():
    """A word hashes alike wherever it stands, whatever its length; documents get equal exact
    keys exactly when their comparison forms are equal."""
    rng = random.Random(4)
    alphabet = "abcdefghé€😀"
    vocab = ["".join(rng.choice(alphabet) for _ in range(n)) for n in [*range(1, 30), 63, 64, 65, 200, 5000]]
    texts = [" , ".join(rng.choice(vocab) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    texts += ["", "Ab. CD", "ab cd", "abcd", "ab  cd!", "cd ab"]
    words = fold_words(pa.array(texts), NormalizeConfig())
    h = word_hashes(words)
    by_word: dict[bytes, set[int]] = {}
    for a, b, x in zip(words.starts, words.stops, h.tolist(), strict=True):
        by_word.setdefault(words.buf[a:b].tobytes(), set()).add(x)
    assert all(len(v) == 1 for v in by_word.values())  # position-independent
    assert len({next(iter(v)) for v in by_word.values()}) == len(by_word)  # no collisions here
    h1, h2 = document_keys(h, words.bounds)
    col = fold_collapse(pa.array(texts), NormalizeConfig())
    forms = [col.doc_bytes(i) for i in range(len(col))]
    keys = list(zip(h1.tolist(), h2.tolist(), strict=True))
    for i in range(len(texts)):
        for j in range(i):
            assert (keys[i] == keys[j]) == (forms[i] == forms[j])


def test_jaccard_matches_python_sets():
    rng = np.random.default_rng(2)
    for _ in range(300):
        a, b = (rng.integers(0, 30, rng.integers(0, 20)).astype(np.uint64) for _ in range(2))
        sa, sb = set(a.tolist()), set(b.tolist())
        assert jaccard(a, b) == pytest.approx(len(sa & sb) / len(sa | sb) if sa | sb else 1.0)


def test_backend_resolution(monkeypatch):
    assert resolve_backend("numpy") == "numpy"
    monkeypatch.setitem(sys.modules, "rensa", None)  # as if not installed
    assert resolve_backend("auto") == "numpy"
    with pytest.raises(ConfigError):
        resolve_backend("rensa")


def test_rensa_backend(tmp_path, corpus):
    pytest.importorskip("rensa")
    backend = resolve_backend("auto")
    assert backend.startswith("rensa ")
    # An estimator as good as the numpy permutations', and all-ones rows for empty documents.
    rng = np.random.default_rng(0)
    m = MinHasher(112, 5, seed=3, backend=backend)
    est = []
    for _ in range(200):
        u = rng.integers(0, 2**63, 300, dtype=np.uint64)
        s = m.signatures(Shingles(np.concatenate([u[:240], u[60:]]), np.repeat([0, 2], [240, 240]), 3))
        assert (s[1] == EMPTY).all()
        est.append(estimate_jaccard(s[:1], s[2:])[0])
    # Unbiased; its permutations are not independent, and the spread is at most the textbook one.
    assert abs(np.mean(est) - 0.6) < 0.01 and 0.02 < np.std(est) < np.sqrt(0.24 / 112) + 0.01
    # The stage finds the same duplicates with either backend; the backend is in the fingerprint.
    src, _ = corpus
    ing = ingest(tmp_path / "root", src)
    fast, slow = (dedup(tmp_path / "root", ing, minhash_backend=b) for b in ("rensa", "numpy"))
    assert fast.counts == slow.counts and fast.fingerprint != slow.fingerprint
    assert Dataset(fast.path).manifest["identity"]["minhash"] == backend
    assert {r["id"]: r["duplicate_of"] for r in rejects(fast)} == {
        r["id"]: r["duplicate_of"] for r in rejects(slow)
    }


def test_union_find_and_bands():
    rng = np.random.default_rng(1)
    u, v = rng.integers(0, 500, 400), rng.integers(0, 500, 400)
    uf = UnionFind(500)
    for i in range(0, 400, 50):
        uf.union(u[i : i + 50], v[i : i + 50])
    roots = uf.roots()
    for a, b in zip(u, v, strict=True):
        assert roots[a] == roots[b]
    assert all(roots[r] == r and r == np.flatnonzero(roots == r).min() for r in np.unique(roots))
    assert match_probability(0.85, 14, 8) > 0.98
    b, r = choose_bands(0.8, 112)
    assert b * r <= 112 and match_probability(0.8, b, r) > 0.4
    with pytest.raises(ValueError):
        DedupConfig(bands=20, rows=8)
    assert DedupConfig(bands=None, rows=None, threshold=0.8).band_shape() == (b, r)


def test_real_web_corpus(tmp_path):
    web = CORPORA / "web" / "cc_main_2019-30_sample.jsonl"
    if not web.exists():
        pytest.skip(f"{web} is absent")
    cfg = IngestConfig(sources=[SourceConfig(path=str(web), id_field="id")])
    ing = run_stage(IngestStage(), cfg, tmp_path, {})
    res = dedup(tmp_path, ing)
    # The sample holds verbatim copies (a feedback page 7 times, ...).
    assert res.counts["rejected_by_reason"]["dedup.exact"] >= 9
    assert res.counts["rows_out"] < ing.counts["rows_out"]


def test_duckdb_makes_its_temp_directory_when_it_first_spills(tmp_path):
    """The workspace leaves the spill directory to DuckDB (small runs never make one)."""
    from pipeline.dedup.workspace import _cursor, close_databases

    spill = tmp_path / "work" / "duckdb-tmp"
    spill.parent.mkdir()
    con = _cursor(spill, "30MB", 1)
    con.execute("CREATE TEMP TABLE t AS SELECT range AS a, md5(range::VARCHAR) AS b FROM range(1000000)")
    assert con.execute("SELECT count(DISTINCT b) FROM t").fetchone() == (1_000_000,)
    assert spill.is_dir()
    close_databases(spill)


def test_database_opened_ahead_serves_the_units_and_reports_a_failed_open(tmp_path):
    """dedup opens its database in a thread while its first phase runs: the units' cursors come
    from that database, and an open that fails is raised at the first query, then tried again."""
    import duckdb

    from pipeline.dedup import workspace

    spill = tmp_path / "work" / "duckdb-tmp"
    workspace.open_database_ahead(spill, "30MB", 1)
    con = workspace._cursor(spill, "30MB", 1)
    assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0].startswith("28.6")
    db = workspace._DATABASES[(str(spill), "30MB", 1)]
    workspace._cursor(spill, "30MB", 1)
    assert workspace._DATABASES[(str(spill), "30MB", 1)] is db  # one database per run
    workspace.close_databases(spill)
    assert (str(spill), "30MB", 1) not in workspace._DATABASES

    workspace.open_database_ahead(spill, "thirty", 1)
    tries = []
    for _ in range(2):
        with pytest.raises(duckdb.Error, match="Memory must have a number"):
            workspace._cursor(spill, "thirty", 1)
        tries.append(workspace._DATABASES[(str(spill), "thirty", 1)])
    assert tries[0] is not tries[1]
    workspace.close_databases(spill)
    assert not [k for k in workspace._DATABASES if k[0] == str(spill)]
