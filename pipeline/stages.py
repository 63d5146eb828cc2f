"""The stages in pipeline order, and how each finds its inputs."""

from __future__ import annotations

from .dedup.stage import DedupStage
from .evaluate.stage import EvaluateStage
from .filter.annotate import AnnotateStage
from .filter.select import FilterStage
from .finetune.stage import FinetuneStage
from .ingest.stage import IngestStage
from .labeled.stage import LabeledStage
from .pretrain.stage import PretrainStage
from .stage import Stage
from .tokenize.stage import TokenizeStage

# Pipeline order. Each stage's `inputs` names the stages it reads.
STAGES: list[Stage] = [
    IngestStage(),
    DedupStage(),
    AnnotateStage(),
    FilterStage(),
    TokenizeStage(),
    PretrainStage(),
    LabeledStage(),
    FinetuneStage(),
    EvaluateStage(),
]
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
ORDER: list[str] = [s.name for s in STAGES]


def upstream(names: list[str]) -> list[str]:
    """The named stages plus every stage they depend on, in pipeline order."""
    need: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n not in need:
            need.add(n)
            todo.extend(BY_NAME[n].inputs)
    return [n for n in ORDER if n in need]
