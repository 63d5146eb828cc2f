"""Stress inputs for the benchmarks: the shared corpora rewritten as other kinds of text.

A rule set or a fast path tuned on one sample must hold on text of other shapes. Each variant is
built offline, deterministically (the same corpora give byte-identical files), as a JSON Lines
file with one document per line: ``id``, ``text``, ``variant`` and ``origin`` (the id of the
document it came from). Sources: the shared web sample, the UDHR paragraphs (both in
``../shared/corpora``) and the built-in corpus's standard-library docstrings and distribution
descriptions (``pipeline.sources.builtin``, so ``code`` follows the Python installation).

=============  =================================================================================
variant        what it is
=============  =================================================================================
web            the web sample as it is (the text the goals were first met on)
web_100        its first 100 documents: fixed per-stage costs against little work
lowercase      the web sample, all lowercase
ptb            the web sample tokenized Penn-Treebank style: ``do n't``, ``it 's``, ``word ,``
no_newlines    the web sample with every line break turned into a space (one paragraph per doc)
short_docs     the web sample cut at line (else word) boundaries into documents of 1-2 KB
boilerplate    each web page inside page furniture: menus, cookie notices, share and footer lines
code           docstrings with code (doctests, indented blocks) grouped by module, and the
               distribution READMEs that hold code blocks
multilingual   the UDHR in 24 languages, up to 8 consecutive paragraphs of one language per doc
=============  =================================================================================

Use from a benchmark or a test::

    from benchmarks.variants import VARIANTS, build_variants
    paths = build_variants(work_dir / "variants")             # {name: Path of its JSONL file}
    paths = build_variants(work_dir / "variants", ["ptb"])    # some of them

or by hand, which writes the files and prints their sizes and hashes::

    python benchmarks/variants.py OUT_DIR [--only ptb code] [--corpora DIR]

A variant whose source is missing (no shared corpora) raises ``FileNotFoundError`` naming it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "corpora"
WEB = Path("web") / "cc_main_2019-30_sample.jsonl"
UDHR = Path("multilingual") / "udhr_24lang_paragraphs.jsonl"
SEED = 16  # every random choice below is seeded from this and the variant's name
SHORT_MIN, SHORT_MAX = 1_000, 2_000  # short_docs: characters per document

Doc = tuple[str, str]  # (origin id, text)


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    build: Callable[[Path], Iterator[Doc]]  # corpora dir -> documents, in a fixed order


# -- sources -------------------------------------------------------------------------------------


def web_docs(corpora: Path) -> Iterator[Doc]:
    """The web sample's non-empty pages, in file order, with their ids."""
    path = corpora / WEB
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the web sample is missing (the shared corpora are optional)")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            text = rec.get("text")
            if isinstance(text, str) and text.strip():
                yield str(rec.get("id") or f"line{n}"), text


def udhr_paragraphs(corpora: Path) -> Iterator[tuple[str, str, str]]:
    """(language code, origin id, paragraph) in file order."""
    path = corpora / UDHR
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the UDHR paragraphs are missing (the shared corpora are optional)")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                rec = json.loads(line)
                yield rec["lang"], f"udhr:{rec['udhr_code']}:{n}", rec["text"]


# -- rewrites of the web sample -----------------------------------------------------------------


def lowercase(corpora: Path) -> Iterator[Doc]:
    for origin, text in web_docs(corpora):
        yield origin, text.lower()


def no_newlines(corpora: Path) -> Iterator[Doc]:
    for origin, text in web_docs(corpora):
        # A line break and the blanks around it become one space: one paragraph per document.
        yield origin, re.sub(r"[ \t]*\n[\s]*", " ", text.strip())


# Penn Treebank conventions (as in the WSJ treebank's tokenized text): clitics split from their
# host (n't, 's, 're, 've, 'll, 'd, 'm), punctuation a token of its own, double quotes as `` and ''.
_PTB_CLITIC = re.compile(r"(?i)(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)(?=\W|$)")
_PTB_CANT = re.compile(r"(?i)\b(ca|wo|sha)(?=n't\b)")  # can't -> ca n't, won't -> wo n't
_PTB_PUNCT = re.compile(r"(\.\.\.|--|[,;:!?()\[\]{}<>@#$%&*]|\"|`)")
_PTB_FINAL_PERIOD = re.compile(r"(?<=[^\s.])\.(?=\s*(?:[\"')\]]*\s*)$)")
_PTB_SENTENCE_PERIOD = re.compile(r"(\S*[a-z0-9%)\]])\.(?=\s+[A-Z\"'(`])")
# Abbreviations keep their period, as in the treebank ("Mr. Smith", "Inc.").
_PTB_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs inc ltd co corp no nos vol fig jan feb mar apr jun jul aug sep "
    "sept oct nov dec e.g i.e etc u.s".split()
)


def _sentence_period(m: re.Match[str]) -> str:
    word = m.group(1)
    return f"{word}." if word.lower().lstrip("(`'") in _PTB_ABBREVIATIONS else f"{word} ."


def ptb_line(line: str) -> str:
    """One line of text tokenized the way the Penn Treebank writes it."""
    line = line.replace("’", "'")
    # Opening double quotes follow a start or a blank or an opening bracket; the rest close.
    line = re.sub(r'(^|[\s(\[{<])"', r"\1 `` ", line)
    line = line.replace('"', " '' ")
    line = _PTB_PUNCT.sub(lambda m: m.group(1) if m.group(1) == "`" else f" {m.group(1)} ", line)
    line = _PTB_SENTENCE_PERIOD.sub(_sentence_period, line)
    line = _PTB_FINAL_PERIOD.sub(" .", line.rstrip())
    line = _PTB_CANT.sub(lambda m: m.group(1) + " ", line)
    line = _PTB_CLITIC.sub(r" \1", line)
    return " ".join(line.split())


def ptb(corpora: Path) -> Iterator[Doc]:
    for origin, text in web_docs(corpora):
        yield origin, "\n".join(ptb_line(line) for line in text.split("\n"))


def short_docs(corpora: Path) -> Iterator[Doc]:
    """Each page cut into pieces of 1,000-2,000 characters: at the last line break in that window,
    else at its last space; a page shorter than that stays whole."""
    rng = random.Random(f"{SEED}:short_docs")
    for origin, text in web_docs(corpora):
        text, pos, part = text.strip(), 0, 0
        while len(text) - pos > SHORT_MAX:
            target = rng.randint(SHORT_MIN, SHORT_MAX)
            window = text[pos + SHORT_MIN : pos + target]
            at = window.rfind("\n")
            if at < 0:
                at = window.rfind(" ")
            cut = pos + SHORT_MIN + at if at >= 0 else pos + target
            yield f"{origin}#{part}", text[pos:cut].strip()
            pos, part = cut, part + 1
        yield f"{origin}#{part}", text[pos:].strip()


# Page furniture, written for this benchmark: what extracted web pages carry around their text.
_MENU = [
    "Home",
    "About",
    "About Us",
    "Services",
    "Products",
    "Shop",
    "Blog",
    "News",
    "Events",
    "Gallery",
    "FAQ",
    "Contact",
    "Contact Us",
    "Careers",
    "Support",
    "Pricing",
    "Login",
    "Sign in",
    "Register",
    "My Account",
    "Cart (0)",
    "Checkout",
    "Search",
    "Menu",
    "Resources",
    "Locations",
    "Donate",
]
_COOKIES = [
    "We use cookies to ensure that we give you the best experience on our website. If you continue "
    "to use this site we will assume that you are happy with it.",
    "This website uses cookies to improve your experience. We'll assume you're ok with this, but you "
    "can opt-out if you wish. Accept Read More",
    "By continuing to browse the site you are agreeing to our use of cookies. Find out more in our "
    "Cookie Policy.",
    "Our site uses cookies and similar technologies. By clicking Accept you consent to the use of "
    "all cookies. Cookie settings Accept",
]
_TOP = ["Skip to content", "Skip to main content", "Toggle navigation", "Search for:", "Close menu"]
_SHARE = ["Share this:", "Facebook", "Twitter", "Pinterest", "LinkedIn", "Email", "Print", "WhatsApp"]
_AFTER = [
    "Related Posts",
    "Leave a Reply",
    "Your email address will not be published.",
    "Required fields are marked *",
    "Comment",
    "Name *",
    "Email *",
    "Website",
    "Post Comment",
    "Please enable JavaScript to view the comments.",
    "Previous Post",
    "Next Post",
    "Posted in Uncategorized",
    "Tags:",
    "Read more",
    "Load more",
    "Subscribe to our newsletter",
    "Enter your email address",
    "Subscribe",
    "Follow us",
    "Back to top",
]
_FOOTER = [
    "Privacy Policy",
    "Terms of Use",
    "Terms and Conditions",
    "Sitemap",
    "Accessibility",
    "Powered by WordPress",
    "Theme by ThemeGrill",
    "All rights reserved.",
]


def boilerplate_page(text: str, rng: random.Random) -> str:
    """A page's text with menus and notices around it, and share lines between its paragraphs."""
    top = rng.sample(_TOP, rng.randint(1, 3)) + rng.sample(_MENU, rng.randint(6, 14))
    if rng.random() < 0.7:
        top.append(rng.choice(_COOKIES))
    body = text.strip().split("\n")
    if len(body) > 4 and rng.random() < 0.5:
        cut = rng.randint(2, len(body) - 2)
        body = body[:cut] + rng.sample(_SHARE, rng.randint(2, 5)) + body[cut:]
    bottom = rng.sample(_SHARE, rng.randint(2, 6)) + rng.sample(_AFTER, rng.randint(4, 10))
    bottom += rng.sample(_MENU, rng.randint(4, 8)) + rng.sample(_FOOTER, rng.randint(2, 5))
    bottom.append(f"© {rng.randint(2009, 2019)} {rng.choice(['Company', 'All Rights Reserved', 'Site'])}")
    if rng.random() < 0.5:
        bottom.append(rng.choice(_COOKIES))
    return "\n".join(top + body + bottom)


def boilerplate(corpora: Path) -> Iterator[Doc]:
    rng = random.Random(f"{SEED}:boilerplate")
    for origin, text in web_docs(corpora):
        yield origin, boilerplate_page(text, rng)


def web(corpora: Path) -> Iterator[Doc]:
    yield from web_docs(corpora)


def web_100(corpora: Path) -> Iterator[Doc]:
    for _, doc in zip(range(100), web_docs(corpora)):
        yield doc


# -- other sources ------------------------------------------------------------------------------

_HAS_CODE = re.compile(r"^(?:>>> |\.\.\. |    \S|\t\S)", re.MULTILINE)
_HAS_CODE_BLOCK = re.compile(r"^(?:```|>>> |\.\. code|::\s*$)", re.MULTILINE)
CODE_DOC_BYTES = 4000  # docstrings of one module are grouped up to about this size


def code(corpora: Path) -> Iterator[Doc]:
    """Docstrings holding code, grouped per module; then the READMEs with code blocks."""
    from pipeline.sources import builtin as default_corpus
    from pipeline.ingest.config import DefaultCorpusConfig

    docstrings = DefaultCorpusConfig(distribution_descriptions=False, licence_files=False)
    group: list[str] = []
    first = module = ""
    for unit in default_corpus.units(docstrings):
        for _, rec in default_corpus.read_unit(unit, docstrings):
            if not _HAS_CODE.search(rec["text"]):
                continue
            size = sum(len(t.encode()) + 2 for t in group)
            if group and (rec["module"] != module or size >= CODE_DOC_BYTES):
                yield first, "\n\n".join(group)
                group = []
            if not group:
                first, module = rec["id"], rec["module"]
            group.append(rec["text"])
    if group:
        yield first, "\n\n".join(group)
    readmes = DefaultCorpusConfig(stdlib_docstrings=False, licence_files=False)
    for unit in default_corpus.units(readmes):
        for _, rec in default_corpus.read_unit(unit, readmes):
            if _HAS_CODE_BLOCK.search(rec["text"]):
                yield rec["id"], rec["text"].strip()


UDHR_GROUP = 8  # paragraphs per document


def multilingual(corpora: Path) -> Iterator[Doc]:
    group: list[str] = []
    first = lang = ""
    for code_, origin, text in udhr_paragraphs(corpora):
        if group and (code_ != lang or len(group) >= UDHR_GROUP):
            yield first, "\n\n".join(group)
            group = []
        if not group:
            first, lang = origin, code_
        group.append(text)
    if group:
        yield first, "\n\n".join(group)


# -- the registry -------------------------------------------------------------------------------

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("web", "the web sample as it is", web),
        Variant("web_100", "the first 100 web pages", web_100),
        Variant("lowercase", "the web sample, all lowercase", lowercase),
        Variant("ptb", "the web sample, Penn-Treebank tokenized", ptb),
        Variant("no_newlines", "the web sample without line breaks", no_newlines),
        Variant("short_docs", "the web sample cut into 1-2 KB documents", short_docs),
        Variant("boilerplate", "web pages inside menus, cookie notices and footers", boilerplate),
        Variant("code", "docstrings with code and READMEs with code blocks", code),
        Variant("multilingual", "UDHR paragraphs in 24 languages", multilingual),
    )
}


def write_variant(name: str, out_dir: Path, corpora: Path = CORPORA) -> Path:
    """Build one variant into ``out_dir/<name>.jsonl`` (rewritten every time; same bytes each time)."""
    variant = VARIANTS[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for n, (origin, text) in enumerate(variant.build(corpora)):
            if text.strip():
                rec = {"id": f"{name}:{n}", "text": text, "variant": name, "origin": origin}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def build_variants(
    out_dir: Path, names: Iterable[str] | None = None, corpora: Path = CORPORA
) -> dict[str, Path]:
    """Write the named variants (default: all, in registry order); their paths by name."""
    names = list(VARIANTS) if names is None else list(names)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise KeyError(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    return {n: write_variant(n, Path(out_dir), Path(corpora)) for n in names}


def summary(path: Path) -> dict[str, float | int | str]:
    docs = size = 0
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for line in f:
            digest.update(line)
            docs += 1
            size += len(json.loads(line)["text"].encode())
    return {
        "docs": docs,
        "mb": size / 1e6,
        "kb_per_doc": size / 1e3 / max(1, docs),
        "sha256": digest.hexdigest()[:16],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--only", nargs="+", choices=list(VARIANTS), default=None)
    ap.add_argument("--corpora", type=Path, default=CORPORA)
    args = ap.parse_args()
    paths = build_variants(args.out_dir, args.only, args.corpora)
    print(f"{'variant':14s} {'docs':>6s} {'MB':>6s} {'KB/doc':>7s}  sha256")
    for name, path in paths.items():
        s = summary(path)
        print(f"{name:14s} {s['docs']:6d} {s['mb']:6.2f} {s['kb_per_doc']:7.2f}  {s['sha256']}")
    print(f"variants={len(paths)} out_dir={args.out_dir}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
