"""The registry: every stage in pipeline order, each declared once as a `pipeline.stage.Stage`.

The pipeline config (`pipeline.config.PipelineConfig`), the Prefect flows (`flows.stages`),
the CLI's stage list and the deployments (`flows.ops`) are all derived from ``STAGES``; adding a
stage is its package plus one line here. :func:`check_registry` runs at import, so a registry
that names an unknown or later input, or a name twice, fails at once.
"""

from __future__ import annotations

from .decontaminate.stage import DecontaminateStage
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

# Pipeline order: every stage comes after the stages it reads.
STAGES: list[Stage] = [
    IngestStage(),
    DedupStage(),
    AnnotateStage(),
    FilterStage(),
    LabeledStage(),
    DecontaminateStage(),
    TokenizeStage(),
    PretrainStage(),
    FinetuneStage(),
    EvaluateStage(),
]
# Section names of the pipeline config that are not stages.
RESERVED = frozenset({"engine"})


def check_registry(stages: list[Stage]) -> None:
    """Raise if the declarations disagree: duplicate or reserved names, inputs not declared before."""
    seen: set[str] = set()
    for s in stages:
        problems = []
        if not s.name or not s.name.isidentifier():
            problems.append(f"name {s.name!r} is not an identifier")
        if s.name in seen or s.name in RESERVED:
            problems.append("its name is taken")
        problems += [f"input {i!r} is not declared before it" for i in s.inputs if i not in seen]
        if not getattr(s, "config_model", None):
            problems.append("no config_model")
        if not s.description:
            problems.append("no description")
        if problems:
            raise TypeError(f"stage {s.name!r}: " + "; ".join(problems))
        seen.add(s.name)


check_registry(STAGES)
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


def scheduled(group: str) -> list[str]:
    """The stages of one schedule group ("data" or "training"), in pipeline order."""
    return [s.name for s in STAGES if s.schedule == group]
