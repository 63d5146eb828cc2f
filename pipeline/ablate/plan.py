"""Planning a proxy ablation: the runs, and which stage executions they share.

A run is the baseline (the base config) or a variant (the base config plus its ``--set``
overrides), each with every pretrain seed asked for. Every stage a run needs is an *instance*
identified by the stage, its config section and its inputs' instances, so two runs whose
configs agree up to a stage share that stage and everything before it: the shared instances
run once, first, and each run then runs only its own instances (from the first stage its
overrides touch), side by side with the other runs.

The proxy preset (:data:`PROXY`) makes pretraining small and quick; any ``--set`` overrides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..config import PipelineBase, load_config
from ..errors import ConfigError
from ..hashing import fingerprint
from ..stages import BY_NAME, ORDER, upstream

BASELINE = "baseline"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# The proxy model: DCLM and FineWeb rank data variants with small models trained briefly on each;
# this one trains in about a minute on 2 CPU cores on the built-in corpus (README, data iteration).
PROXY: dict[str, Any] = {
    "pretrain.gpt.n_layer": 2,
    "pretrain.gpt.n_head": 4,
    "pretrain.gpt.n_embd": 128,
    "pretrain.batch_size": 16,
    "pretrain.context_len": 128,
    "pretrain.max_steps": 200,
    "pretrain.warmup_steps": 20,
    "pretrain.eval_interval": 100,
    "pretrain.checkpoint_interval": 100,
    "finetune.max_steps": 120,
    # The label-efficiency curve trains 40 small models per run (minutes each run) and is not
    # in the ablation's table, which compares the fine-tuned model and held-out perplexity.
    "evaluate.curve.enabled": False,
}


@dataclass(frozen=True)
class Variant:
    name: str
    overrides: tuple[str, ...]


@dataclass
class Run:
    """One model trained: a variant (or the baseline) with one pretrain seed."""

    variant: str
    seed: int
    config: PipelineBase
    overrides: tuple[str, ...]
    first_stage: str | None = None  # the first stage whose config differs from the baseline's
    instances: dict[str, str] = field(default_factory=dict)  # stage -> instance key

    @property
    def name(self) -> str:
        return f"{self.variant}@{self.seed}"


@dataclass
class Instance:
    key: str
    stage: str
    config: BaseModel
    inputs: dict[str, str]  # upstream stage -> instance key
    runs: list[str] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        return len(self.runs) > 1


@dataclass
class AblationPlan:
    until: str
    stages: list[str]  # every stage a run needs, in pipeline order
    runs: list[Run]
    instances: dict[str, Instance]  # key -> instance, in pipeline order of first use
    variants: list[Variant]
    base_overrides: tuple[str, ...]

    def shared(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.shared]

    def own(self, run: Run) -> list[Instance]:
        """The run's instances no other run needs, in pipeline order."""
        return [
            self.instances[run.instances[s]]
            for s in self.stages
            if not self.instances[run.instances[s]].shared
        ]

    @property
    def id(self) -> str:
        return fingerprint(runs=[(r.name, r.instances) for r in self.runs])[:12]


def parse_variant_args(args: list[str]) -> tuple[list[str], list[Variant]]:
    """``[--set k=v ...] --variant NAME --set k=v [--set ...] --variant NAME2 ...`` in order.

    ``--set`` before the first ``--variant`` applies to every run (the baseline too).
    Returns (base overrides, variants).
    """
    base: list[str] = []
    variants: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        flag, eq, inline = arg.partition("=")
        if flag not in ("--variant", "--set"):
            raise ConfigError(f"unexpected argument {arg!r}: expected --variant NAME or --set key=value")
        if eq:
            value = inline
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"{flag} needs a value")
            value = args[i + 1]
            i += 2
        if flag == "--variant":
            variants.append((value, []))
        elif variants:
            variants[-1][1].append(value)
        else:
            base.append(value)
    return base, [Variant(n, tuple(o)) for n, o in variants]


def _section(cfg: PipelineBase, stage: str) -> dict[str, Any]:
    return cfg.stage_config(stage).model_dump(mode="json")


def plan_ablation(
    variants: list[Variant],
    until: str = "evaluate",
    config_path: str | Path | None = None,
    base_overrides: list[str] | tuple[str, ...] = (),
    seeds: int = 1,
    proxy: bool = True,
) -> AblationPlan:
    """Resolve every run's config, refuse variants that change nothing, find the shared stages."""
    if until not in ORDER:
        raise ConfigError(f"--until {until!r}: stages are {', '.join(ORDER)}")
    if "pretrain" not in upstream([until]):
        raise ConfigError(
            f"--until {until!r}: an ablation trains a proxy model, so it runs at least to pretrain"
        )
    if not variants:
        raise ConfigError("an ablation needs at least one --variant NAME --set key=value")
    if seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    seen: set[str] = set()
    for v in variants:
        if not NAME.match(v.name) or v.name == BASELINE:
            raise ConfigError(
                f"variant name {v.name!r}: use letters, digits, '.', '_' or '-', and not {BASELINE!r}"
            )
        if v.name in seen:
            raise ConfigError(f"variant {v.name!r} is given twice")
        seen.add(v.name)
        if not v.overrides:
            raise ConfigError(f"variant {v.name!r} has no --set: it would change nothing")
    preset = [f"{k}={v}" for k, v in PROXY.items()] if proxy else []
    common = [*preset, *base_overrides]
    stages = upstream([until])
    base_cfg = load_config(config_path, common)
    configs: dict[str, tuple[PipelineBase, tuple[str, ...]]] = {BASELINE: (base_cfg, ())}
    for v in variants:
        try:
            configs[v.name] = (load_config(config_path, [*common, *v.overrides]), v.overrides)
        except ConfigError as e:
            raise ConfigError(f"variant {v.name!r}: {e}") from e
    sections = {n: {s: _section(c, s) for s in stages} for n, (c, _) in configs.items()}
    for v in variants:
        if sections[v.name] == sections[BASELINE]:
            touched = {o.split("=", 1)[0].split(".", 1)[0] for o in v.overrides}
            later = sorted(t for t in touched if t in ORDER and t not in stages)
            why = f" (it only changes {', '.join(later)}, after --until {until})" if later else ""
            raise ConfigError(
                f"variant {v.name!r} changes nothing: {' '.join(v.overrides)} leaves every stage up to "
                f"{until} as the baseline has it{why}"
            )
        for other in variants:
            if other.name < v.name and sections[other.name] == sections[v.name]:
                raise ConfigError(f"variants {other.name!r} and {v.name!r} are the same configuration")
    runs: list[Run] = []
    instances: dict[str, Instance] = {}
    for name, (cfg, overrides) in configs.items():
        pretrain: Any = cfg.stage_config("pretrain")
        base_seed = pretrain.seed
        for k in range(seeds):
            run_cfg = (
                cfg
                if k == 0
                else cfg.model_copy(update={"pretrain": pretrain.model_copy(update={"seed": base_seed + k})})
            )
            run = Run(name, base_seed + k, run_cfg, tuple(overrides))
            if name != BASELINE:
                run.first_stage = next(s for s in stages if sections[name][s] != sections[BASELINE][s])
            for s in stages:
                section = run_cfg.stage_config(s)
                ups = {u: run.instances[u] for u in BY_NAME[s].inputs}
                key = fingerprint(stage=s, config=section.model_dump(mode="json"), inputs=ups)
                inst = instances.setdefault(key, Instance(key, s, section, ups))
                inst.runs.append(run.name)
                run.instances[s] = key
            runs.append(run)
    ordered = dict(sorted(instances.items(), key=lambda kv: ORDER.index(kv[1].stage)))
    return AblationPlan(until, stages, runs, ordered, variants, tuple(base_overrides))
