"""lm-eval-harness (EleutherAI) on a model exported to a transformers directory.

Optional: the ``lm_eval`` extra installs it. Tasks come from the evaluate config; lm-eval's own
task names work where their data is available offline, and tokenmill ships offline tasks built
from local files in ``lm_eval_tasks/`` (custom-task YAML plus a JSON Lines file, found beside
this module wherever the package is installed):

- ``tokenmill_pycloze``: 40 multiple-choice items, which ending completes a line of Python
  documentation, code or licence text (acc, acc_norm);
- ``tokenmill_pycloze_ppl``: the same lines with their correct endings, as a perplexity task
  (word and byte perplexity, bits per byte).

The model runs through lm-eval's ``hf`` backend from the local directory (no remote code); the
Hugging Face hub and datasets are switched to offline mode for the call.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError

TASKS_DIR = Path(__file__).with_name("lm_eval_tasks")
BUILTIN_TASKS = ("tokenmill_pycloze", "tokenmill_pycloze_ppl")
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def installed() -> bool:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return False
    return True


def run_harness(
    model_dir: str | Path,
    tasks: list[str],
    *,
    include_path: list[str] | None = None,
    num_fewshot: int | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Scores per task as ``{task: {metric: value}}`` (stderr as ``<metric>_stderr``), plus sample counts."""
    if not installed():
        raise ConfigError(
            "evaluate.lm_eval.tasks is set but lm-eval is not installed: pip install 'tokenmill[lm_eval]'"
        )
    saved = {k: os.environ.get(k) for k in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager

        manager = TaskManager(include_path=[str(TASKS_DIR), *(include_path or [])])
        unknown = [t for t in tasks if t not in manager.all_tasks]
        if unknown:
            raise ConfigError(
                f"evaluate.lm_eval.tasks: unknown task(s) {', '.join(unknown)}; tokenmill's offline "
                f"ones are {', '.join(BUILTIN_TASKS)}, more come from lm_eval.include_path"
            )
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(model_dir), "dtype": "float32", "trust_remote_code": False},
            tasks=list(tasks),
            num_fewshot=num_fewshot,
            limit=limit,
            batch_size=batch_size,
            device=device,
            task_manager=manager,
            log_samples=False,
            bootstrap_iters=1000,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if out is None:  # not rank 0 of a distributed run
        return {"version": lm_eval.__version__, "tasks": {}, "samples": {}}
    return {
        "version": lm_eval.__version__,
        "tasks": {task: scores(values) for task, values in out["results"].items()},
        "samples": {t: n.get("effective", n.get("original")) for t, n in out.get("n-samples", {}).items()},
    }


def scores(values: dict[str, Any]) -> dict[str, float]:
    """lm-eval's ``"acc,none": 0.5`` keys as ``{"acc": 0.5}``; filters other than none keep a suffix."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if "," not in key or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        metric, filt = key.split(",", 1)
        name = metric if filt == "none" else f"{metric}[{filt}]"
        if math.isfinite(value):
            out[name] = float(value)
    return out
