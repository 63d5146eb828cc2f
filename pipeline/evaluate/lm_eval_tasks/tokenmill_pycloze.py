"""Loader of tokenmill's offline lm-eval tasks: the rows of the JSON Lines file beside this module.

lm-eval imports this file by path (``custom_dataset: !function tokenmill_pycloze.load``), so the
data is found relative to it wherever the package is installed; nothing is downloaded.
"""

import json
from pathlib import Path

DATA = Path(__file__).with_name("pycloze.jsonl")


def load(**_: object):
    """The items as a datasets.DatasetDict with one ``test`` split (lm-eval passes its metadata)."""
    import datasets

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def full_text(doc: dict) -> str:
    """The item with its correct ending: the text the perplexity task scores."""
    return doc["context"] + doc["choices"][doc["label"]]
