"""Language-ID accuracy and speed of tokenmill's `lang` signal (py3langid) on labelled paragraphs.

    python benchmarks/langid.py [--input FILE.jsonl] [--label-field lang] [--min-chars 100]

Reads JSON Lines with a ``text`` field; when records carry a label (``lang``, ISO 639-1, as in
the shared UDHR sample) it reports accuracy on texts of at least ``--min-chars`` characters.
The last line: ``docs= accuracy= docs_per_s=`` (accuracy is ``nan`` without labels).
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

from pipeline.filter.config import AnnotateConfig
from pipeline.filter.langid import classify, identifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", type=Path, default=DEFAULT)
    ap.add_argument("--label-field", default="lang")
    ap.add_argument("--min-chars", type=int, default=100)
    args = ap.parse_args()
    if not args.input.is_file():
        sys.exit(f"{args.input}: no such file (the shared corpora live in ../shared/corpora)")
    texts, labels = [], []
    for line in args.input.open(encoding="utf-8"):
        if not line.strip():
            continue
        rec = json.loads(line)
        if isinstance(rec.get("text"), str) and len(rec["text"]) >= args.min_chars:
            texts.append(rec["text"])
            label = rec.get(args.label_field)
            # Compare primary language subtags: "pt-PT" and "de-1996" are pt and de.
            labels.append(label.split("-")[0].lower() if isinstance(label, str) else None)
    identifier()  # load the model before timing
    t0 = time.perf_counter()
    langs, _ = classify(texts, AnnotateConfig().langid_max_chars)
    seconds = time.perf_counter() - t0
    labelled = [(p, g) for p, g in zip(langs, labels) if g]
    correct = sum(p == g for p, g in labelled)
    misses = Counter(f"{g}->{p}" for p, g in labelled if p != g)
    if misses:
        print("most common errors:", dict(misses.most_common(8)))
    accuracy = correct / len(labelled) if labelled else float("nan")
    print(
        f"docs={len(texts)} labelled={len(labelled)} accuracy={accuracy:.4f} docs_per_s={len(texts) / seconds:.1f}"
    )


if __name__ == "__main__":
    main()
