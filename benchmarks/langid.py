"""Language-ID accuracy and speed of every backend of tokenmill's `lang` signal, side by side.

    python benchmarks/langid.py [--input FILE.jsonl] [--label-field lang] [--min-chars 100]
                                [--backends fasttext cld2 py3langid]

Reads JSON Lines with a ``text`` field; when records carry a label (``lang``, ISO 639-1, as in
the shared UDHR sample) it reports accuracy on texts of at least ``--min-chars`` characters.
Every backend runs `pipeline.filter.langid.classify`, the code the annotate stage runs, with the
stage's default ``langid_max_chars``; a backend whose package is missing is skipped. One line per
backend, then a last line for the default backend (the one annotate uses):
``backend= docs= accuracy= docs_per_s=`` (accuracy is ``nan`` without labels).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT = ROOT.parent / "shared" / "corpora" / "multilingual" / "udhr_24lang_paragraphs.jsonl"

from pipeline.filter import langid
from pipeline.filter.config import AnnotateConfig


def read(path: Path, label_field: str, min_chars: int) -> tuple[list[str], list[str | None]]:
    texts, labels = [], []
    for line in path.open(encoding="utf-8"):
        if not line.strip():
            continue
        rec = json.loads(line)
        if isinstance(rec.get("text"), str) and len(rec["text"]) >= min_chars:
            texts.append(rec["text"])
            label = rec.get(label_field)
            # Compare primary language subtags: "pt-PT" and "de-1996" are pt and de.
            labels.append(label.split("-")[0].lower() if isinstance(label, str) else None)
    return texts, labels


def measure(backend: str, texts: list[str], labels: list[str | None]) -> dict:
    langid.load(backend)  # load the model before timing
    t0 = time.perf_counter()
    langs, scores = langid.classify(texts, AnnotateConfig().langid_max_chars, backend=backend)
    seconds = time.perf_counter() - t0
    assert ((scores >= 0) & (scores <= 1)).all(), f"{backend}: a score outside [0, 1]"
    labelled = [(p, g) for p, g in zip(langs, labels) if g]
    correct = sum(p == g for p, g in labelled)
    return {
        "backend": backend,
        "docs": len(texts),
        "labelled": len(labelled),
        "accuracy": correct / len(labelled) if labelled else float("nan"),
        "docs_per_s": len(texts) / seconds,
        "errors": dict(Counter(f"{g}->{p}" for p, g in labelled if p != g).most_common(5)),
    }


def line(r: dict) -> str:
    return (
        f"backend={r['backend']} docs={r['docs']} labelled={r['labelled']} "
        f"accuracy={r['accuracy']:.4f} docs_per_s={r['docs_per_s']:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", type=Path, default=DEFAULT)
    ap.add_argument("--label-field", default="lang")
    ap.add_argument("--min-chars", type=int, default=100)
    ap.add_argument("--backends", nargs="+", choices=langid.BACKENDS, default=list(langid.BACKENDS))
    args = ap.parse_args()
    if not args.input.is_file():
        sys.exit(f"{args.input}: no such file (the shared corpora live in ../shared/corpora)")
    texts, labels = read(args.input, args.label_field, args.min_chars)
    results = {}
    for backend in args.backends:
        if not langid.available(backend):
            print(f"backend={backend} skipped: pip install {langid.PACKAGES[backend]}")
            continue
        results[backend] = r = measure(backend, texts, labels)
        print(line(r), "most common errors:", r["errors"], flush=True)
    default = langid.resolve_backend(AnnotateConfig().langid_backend)
    if default not in results:
        results[default] = measure(default, texts, labels)
    print(line(results[default]))


if __name__ == "__main__":
    main()
