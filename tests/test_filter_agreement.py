"""The quality filters decide as datatrove's Gopher, C4 and FineWeb filters do, on any text.

tokenmill splits words and sentences by the rules of spaCy's English tokenizer and sentencizer
(`pipeline.filter.english`), which datatrove's filters call. The first tests pin those rules on
cases each rule exists for; the others need the bench extra (datatrove, spaCy) and check the
rules against spaCy itself, then the whole annotate + filter path against datatrove's filters on
random mixtures of the stress variants (benchmarks/variants.py).
"""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from benchmarks.variants import CORPORA, build_variants
from pipeline.filter import c4, english
from pipeline.filter import text as batch_text
from pipeline.filter.batch import TextBatch
from pipeline.filter.english import SPECIAL, split_chunk
from pipeline.filter.text import own_sentence_counts, sentence_counts, split_words, word_lists

CASES = {
    # special cases, with and without apostrophes, and words that only look like them
    "Don't": ["Do", "n't"],
    "dont": ["do", "nt"],
    "cannot": ["can", "not"],
    "its": ["its"],
    "Mr.": ["Mr."],
    "(Mr.)": ["(", "Mr.", ")"],
    # prefixes, suffixes, periods after lowercase letters but not after one capital
    '("word."),': ["(", '"', "word", ".", '"', ")", ","],
    "J.": ["J."],
    "USA.": ["USA", "."],
    "5km.": ["5", "km", "."],
    "5m.": ["5", "m."],  # "m." is a special case the split pieces merge into
    "10km": ["10", "km"],
    "$5": ["$", "5"],
    "ABC's": ["ABC", "'s"],
    "O'Neil": ["O'Neil"],
    # infixes: hyphens and slashes between letters, operators between digits, not between others
    "e-mail": ["e", "-", "mail"],
    "1-2": ["1", "-", "2"],
    "a-1": ["a-1"],
    "and/or": ["and/or"],
    "this-and/or": ["this", "-", "and/or"],
    "Re:D": ["Re", ":D"],  # ":D" is an emoticon
    "word):": ["word", "):"],
    "3.5": ["3.5"],
    "xa.Bc": ["xa", ".", "Bc"],
    "a.Bc": ["a.", "Bc"],
    # URLs stay whole, once their marks are peeled
    "(www.example.com/a).": ["(", "www.example.com/a", ")", "."],
    "Object.method": ["Object.method"],
    "...": ["..."],
    "wait...": ["wait", "..."],
}


@pytest.mark.parametrize("chunk", list(CASES))
def test_chunks_split_as_the_english_tokenizer_does(chunk):
    assert split_chunk(chunk) == CASES[chunk]
    assert split_words(chunk) == CASES[chunk]  # the batch fast paths agree with the algorithm


# Chunks of the shapes the batch fast paths decide (a core of letters and digits with separators,
# up to two marks at either end) and their near misses, which the full algorithm must decide.
TRICKY = [
    "word", "word,", "(word", '"word."', "«word»", "(“word”)", "word).", "word.)", "word:)", "(:",
    "USA.", "U.S.A.", "a.", "b.)", "x.y", "x.Y", "3.5.", "1.5km", "5km.", "5km's", "10GB,", "5%.", "$5",
    "US$5.", "5US$", "5+", "5++", "1-2-3", "1+2=3", "a-b-c", "a-1", "1-a", "e-mail,", "--flag", "-x",
    "a/b/c", "a:b", "A:b", "a,b", "1,000", "1,000.50", "a=b", "x<y", "x>y", "a^b", "2^3", "2*3",
    "it's", "It's.", "its", "dont.", "don't,", "(don't)", "ca", "can't", "cannot.", "gonna,",
    "o'clock.", "O'Neil's", "ma'am,", "rock'n'roll", "’s", "'s", "’S.", "ABC's.", "ABC’s)",
    "Mr.", "(Mr.)", "Mr.,", "e.g.", "e.g.,", "i.e.)", "p.m.", "5p.m.", "5pm.", "10a.m.", "12am",
    "...", "word...", "word…", "word……", "..word", "…word", "wait...)", "a..b", "a…b",
    ":)", ":))", "(:)", "<3", "<3.", "^_^", "-_-", "o.O", "=)", "C++", "C++.", "and/or", "w/o,",
    "http://x.org", "(www.example.com/a).", "joe@x.org,", "x.org.", "192.168.0.1", "8.8.8.8/24",
    "°C.", "5°C.", "—word", "word—", "word—word", "word–.", "“word”", "‘word’", "„word“",
    "Straße.", "naïve,", "café)", "ﬁnance", "日本語。", "中文，", "हिन्दी।", "مرحبا،", "Ελληνικά.",
    "ПРИВЕТ.", "Привет,", "x²", "H₂O", "½", "IV.", "Ⅳ.", "#1", "#hashtag,", "@user:", "a_b", "__init__",
    "f(x)", "f(x),", "print(x).", "[1]", "[edit]", "x[0]", "{a}", "<b>", "</b>", "&amp;", "a&b",
    "\u200eword", "word\u200c", "ab\u00adcd", "§5", "%5", "=5", "+5", "+a", "''word''", "``word``",
    "os.path", "os.path.", "`os.path`", "``os.path``,", "os.Path", "os.PATH.", "a.b-c", "a.b:c", "a.b=c",
    "np.random_sample", "a.1", "1.a", "1.ab", "x.y()", "x.y():", "v1.2.3", "e.g", "a.b's", "a.b'c",
    "a.’b", "a.'b", "é.ß", "a.中", "中.a", "a.b.c.d", "www.x.org", "x.org", "Mr.x", "U.S", "a._b",
]  # fmt: skip


@pytest.fixture
def kernels_only(monkeypatch):
    """Every distinct chunk through the batch fast paths, however few (they are skipped for a
    few thousand chunks or less, which the Python algorithm splits quicker)."""
    monkeypatch.setattr(batch_text, "PYTHON_ONLY_CHUNKS", 0)


def split_each(chunks: list[str]) -> list[list[str]]:
    """Each chunk's tokens by the batch code (the distinct chunks of the texts at once)."""
    tokens, counts = word_lists(pa.array(chunks, pa.large_string()))
    flat, out, at = tokens.to_pylist(), [], 0
    for n in counts.tolist():
        out.append(flat[at : at + n])
        at += n
    return out


def with_marks(chunks: list[str]) -> list[str]:
    """Each chunk, and with opening and closing marks around it."""
    out = []
    for c in chunks:
        out += [c, f"({c}", f"{c},", f'"{c}."', f"({c}),", f"{c}'s", f"{c}:", f"[{c}]"]
    return out


def test_fast_paths_split_tricky_chunks_as_the_algorithm_does(kernels_only):
    chunks = with_marks(list(CASES) + TRICKY)
    assert split_each(chunks) == [split_chunk(c) for c in chunks]


def test_few_chunks_are_split_by_the_algorithm_alone():
    chunks = with_marks(TRICKY)
    assert split_each(chunks) == [split_chunk(c) for c in chunks]


def test_suffix_shortcut_agrees_with_the_suffix_pattern():
    strings = {
        c[i:j]
        for c in with_marks(list(CASES) + TRICKY)
        for i in range(len(c))
        for j in range(i + 1, len(c) + 1)
    }
    strings |= {"5" + u for u in english.UNITS} | {"5" + c for c in english.CURRENCY}
    assert [english._suffix_len(s) for s in sorted(strings)] == [
        english._suffix_search(s) for s in sorted(strings)
    ]


def test_sentences_of_spaced_lines_from_their_own_tokens_match_splitting_them_again():
    lines = [
        "end.  ''", "end. ''", "One.  Two.   (three) four", "a\t. b", "x .  ! y", "Mr.  (Smith) left.  '' ok",
        "no final mark  here", "Stop.\u00a0(a) b", "Wait!\u3000\u3000\"quoted\" next", "A.  B.  C.",
        "   leading and trailing.   ", "x", "tab\tseparated. \t(words)",
    ]  # fmt: skip
    b = TextBatch(lines)
    written = pc.utf8_trim_whitespace(pa.array(lines, pa.large_string()))
    want, words = sentence_counts(written)
    spaced = np.ones(len(lines), dtype=bool)
    got = own_sentence_counts(b.line_split, np.arange(len(lines)), written, spaced)
    assert got.tolist() == want.tolist()
    assert b.line_split.counts.tolist() == words.tolist()
    # Unspaced, whitespace is not a token: the lines' own tokens alone.
    alone = own_sentence_counts(b.line_split, np.arange(len(lines)), written, ~spaced)
    assert alone.tolist() == sentence_counts(pa.array([" ".join(line.split()) for line in lines]))[0].tolist()


def test_batch_split_matches_one_chunk_at_a_time():
    text = " ".join(CASES) + "\n  " + "\t".join(reversed(CASES)) + " "
    tokens, counts = word_lists(pa.array([text, "", "   "], pa.large_string()))
    want = [t for chunk in text.split() for t in split_chunk(chunk)]
    assert tokens.to_pylist() == want and counts.tolist() == [len(want), 0, 0]


def test_sentences_start_after_a_final_mark_at_a_non_punctuation_token():
    lines = ["One. Two? Three! four", "no final mark", "end.  ''", "end. ''", "Mr. Smith left.", "A. B"]
    sentences, words = sentence_counts(pa.array(lines, pa.large_string()))
    # a run of two spaces is a token of its own: after a final mark it starts a sentence
    assert sentences.tolist() == [4, 1, 2, 1, 1, 1]
    assert words.tolist() == [len(split_words(line)) for line in lines]


def test_c4_counts_sentences_and_words_of_the_lines_it_keeps_as_it_writes_them():
    text = "First line here. Second one! [1]\nshort line\nWe use cookies on this site.\nLast line is here."
    s = c4.signals(TextBatch([text]))
    assert s["c4_sentence_count"][0] == 3  # the short and the cookie lines are removed
    written = "First line here. Second one! \nLast line is here."
    assert s["c4_kept_word_count"][0] == len(split_words(written))
    assert c4.as_written(pa.array([text + "\n"]))[0].as_py() == (
        "First line here. Second one! \nshort line\nWe use cookies on this site.\nLast line is here."
    )


# -- against spaCy and datatrove themselves (the bench extra) -------------------------------------


@pytest.fixture(scope="module")
def spacy_english():
    spacy = pytest.importorskip("spacy", reason="the bench extra (spaCy) is not installed")
    return spacy.blank("en")


@pytest.mark.slow
def test_special_cases_are_spacys(spacy_english):
    from spacy.symbols import ORTH

    rules = {k: tuple(d[ORTH] for d in v) for k, v in spacy_english.tokenizer.rules.items()}
    assert rules == SPECIAL


@pytest.mark.slow
def test_character_classes_are_spacys(spacy_english):
    import re
    import sys

    from spacy.lang import char_classes

    from pipeline.filter import english

    def codes(cls: str) -> set[int]:
        r = re.compile(f"[{cls}]")
        return {c for c in range(sys.maxunicode + 1) if r.match(chr(c))}

    assert codes(english.LOWER) == codes(char_classes.ALPHA_LOWER)
    assert codes(english.UPPER) == codes(char_classes.ALPHA_UPPER)
    assert codes(english.ALPHA) == codes(char_classes.ALPHA)
    assert codes(english.ICONS) == codes(char_classes._other_symbols)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Documents of the stress variants, by variant (skips without the shared corpora)."""
    if not CORPORA.is_dir():
        pytest.skip(f"{CORPORA} is absent: the shared corpora are optional")
    names = [
        "web_100",
        "lowercase",
        "ptb",
        "no_newlines",
        "short_docs",
        "boilerplate",
        "code",
        "multilingual",
    ]
    paths = build_variants(tmp_path_factory.mktemp("variants"), names)
    return {n: [json.loads(line)["text"] for line in p.open(encoding="utf-8")] for n, p in paths.items()}


@pytest.mark.slow
def test_fast_paths_split_every_chunk_of_the_variants_as_the_algorithm_does(pool, kernels_only):
    for name, texts in pool.items():
        chunks = pc.unique(pc.list_flatten(pc.utf8_split_whitespace(pa.array(texts, pa.large_string()))))
        chunks = chunks.filter(pc.greater(pc.binary_length(chunks), 0)).cast(pa.large_string())
        tokens, per_chunk = batch_text._chunk_tokens(chunks, None)
        flat, at, values = tokens.to_pylist(), 0, chunks.to_pylist()
        for chunk, n in zip(values, per_chunk.tolist()):
            assert flat[at : at + n] == split_chunk(chunk), (name, chunk)
            at += n
        assert [english._suffix_len(c) for c in values] == [english._suffix_search(c) for c in values], name


@pytest.mark.slow
def test_tokens_are_spacys_on_every_variant(pool, spacy_english):
    rng = random.Random(16)
    for name, texts in pool.items():
        for text in rng.sample(texts, min(25, len(texts))):
            assert split_words(text) == [t.text.strip() for t in spacy_english(text) if t.text.strip()], name


@pytest.mark.slow
def test_filter_agrees_with_datatrove_on_random_mixtures_of_the_variants(pool, tmp_path_factory):
    pytest.importorskip("datatrove", reason="the bench extra (datatrove) is not installed")
    pytest.importorskip("spacy", reason="datatrove splits English words with spaCy")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from benchmarks.filter_vs_datatrove import (
        DATATROVE_RULES,
        QUALITY_ONLY,
        run_datatrove,
        run_datatrove_documented,
    )
    from pipeline.filter import AnnotateStage, FilterStage
    from pipeline.ingest.config import IngestConfig, SourceConfig
    from pipeline.ingest.stage import IngestStage
    from pipeline.stage import run_stage

    names = sorted(pool)
    # A document: one variant's document, or pieces of two or three joined by a line break, a
    # blank line or a space.
    piece = st.tuples(st.sampled_from(names), st.integers(0, 10**6))
    document = st.tuples(st.lists(piece, min_size=1, max_size=3), st.sampled_from(["\n", "\n\n", " "]))

    @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(document, min_size=20, max_size=40))
    def check(docs):
        texts = [sep.join(pool[n][k % len(pool[n])] for n, k in pieces) for pieces, sep in docs]
        root = tmp_path_factory.mktemp("mixture")
        path = root / "mixture.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
        ingest = run_stage(IngestStage(), IngestConfig(sources=[SourceConfig(path=str(path))]), root, {})
        annotated = run_stage(AnnotateStage(), QUALITY_ONLY, root, {"dedup": ingest.dataset})
        kept = run_stage(FilterStage(), DATATROVE_RULES, root, {"annotate": annotated.dataset})
        ours = [False] * len(texts)
        for p in kept.dataset.shard_paths():
            import pyarrow.parquet as pq

            for record in pq.read_table(p, columns=["source_record"]).column(0).to_pylist():
                ours[record - 1] = True
        theirs = [t is not None for t in run_datatrove(texts)[0]]
        differ = [i for i in range(len(texts)) if ours[i] != theirs[i]]
        explained = run_datatrove_documented([texts[i] for i in differ]) if differ else []
        unexplained = [i for i, keep in zip(differ, explained) if keep != ours[i]]
        assert 1 - len(differ) / len(texts) >= 0.97, (differ, [texts[i][:200] for i in unexplained])
        assert not unexplained, [texts[i][:300] for i in unexplained]

    check()
