"""The whole pipeline's configuration: one section per registered stage, plus the engine.

``PipelineConfig`` is built from the stage registry (`pipeline.stages`): a section per stage,
named after it and typed by its ``config_model``, in pipeline order. The same model is the YAML
file format (`--config`), the target of `--set dotted.key=value`, and the Prefect flow parameter
(so the UI renders a form). Defaults live in each stage's config module; a run records its
resolved config in every manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .errors import ConfigError
from .stages import STAGES


class EngineConfig(BaseModel):
    """Where the units of work run. The same flows, a bigger engine: no home-made cluster code."""

    model_config = ConfigDict(extra="forbid")

    runner: Literal["threads", "dask", "ray"] = Field("threads", description="Prefect task runner")
    workers: int = Field(2, ge=1, description="Threads, or Dask LocalCluster worker processes")
    address: str | None = Field(None, description="Existing Dask scheduler or Ray cluster address")


class PipelineBase(BaseModel):
    """What the pipeline config holds besides the stages' sections."""

    model_config = ConfigDict(extra="forbid")

    engine: EngineConfig = Field(default_factory=EngineConfig)

    def stage_config(self, name: str) -> BaseModel:
        """The config section of stage ``name``."""
        return getattr(self, name)


PipelineConfig: type[PipelineBase] = create_model(  # type: ignore[call-overload]
    "PipelineConfig",
    __base__=PipelineBase,
    __doc__="Every stage's configuration, one section per stage in pipeline order.",
    **{
        s.name: (s.config_model, Field(default_factory=s.config_model, description=s.description))
        for s in STAGES
    },
)


def parse_value(text: str) -> Any:
    """`--set` values are JSON when they parse as JSON, else plain strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        if isinstance(node, list):
            node = node[int(k)]
            continue
        node = node.setdefault(k, {})
        if not isinstance(node, dict | list):
            raise ConfigError(f"--set {dotted}: {k!r} is not a section")
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> PipelineConfig:
    """Defaults, then the YAML file, then each `key=value` override, validated once at the end."""
    data: dict[str, Any] = PipelineConfig().model_dump(mode="json")
    if path:
        p = Path(path)
        if not p.is_file():
            from .configs import bundled, names

            found = None if p.parent != Path(".") else bundled(p.name)
            if found is None:
                raise ConfigError(f"config file {p} does not exist (bundled configs: {', '.join(names())})")
            p = found
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from e
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of stage names")
        data = _merge(data, loaded)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected dotted.key=value")
        key, _, raw = item.partition("=")
        try:
            apply_override(data, key.strip(), parse_value(raw))
        except (IndexError, ValueError) as e:
            raise ConfigError(f"--set {item!r}: {e}") from e
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"config {where}: {first['msg']}") from e


def _merge(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
