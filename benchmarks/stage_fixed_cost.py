"""Fixed cost per stage: what each data stage costs on a near-empty input, validation included.

The data path (ingest, dedup, annotate, filter, decontaminate, tokenize with a tokenizer trained
beforehand) runs on the first ``--docs`` web pages (default 10, so per-row work is a few
milliseconds) in one process per validation engine. decontaminate's other input, the labeled
stage's evaluation texts (the built-in task by default), is made once per process before any
pass, untimed: it is not part of the small input's path. The first pass pays the process's one-time costs (imports, model
loads, DuckDB's start where it is used); then ``--repeats`` passes, each in a fresh data root so
nothing is cached, are timed stage by stage. A stage's validation seconds come from its own
``validation`` report. Three validation engines run the same suites: ``auto`` (the default:
Arrow for small views), ``duckdb``, and ``gx`` through Great Expectations, whose import is timed
on its own before its first pass.

Prints a table (median seconds per stage, per engine) and on the last line ``fixed_cost_max_s``
(the slowest stage, warm, default engine), ``validation_max_s`` (its largest validation
seconds), the same for the other engines (``duckdb_...``, ``gx_...``), ``gx_import_s`` and the
engines' first-pass seconds (``first_pass_s``, ``duckdb_first_pass_s``, ``gx_first_pass_s``:
the whole path in a fresh process).

    python benchmarks/stage_fixed_cost.py [--input FILE.jsonl] [--docs 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT = ROOT.parent / "shared" / "corpora" / "web" / "cc_main_2019-30_sample.jsonl"
STAGES = ("ingest", "dedup", "annotate", "filter", "decontaminate", "tokenize")


def labeled(root: Path):
    """The labeled stage's dataset (decontaminate's evaluation texts), made once, untimed."""
    from pipeline.config import PipelineConfig
    from pipeline.labeled.stage import LabeledStage
    from pipeline.stage import run_stage

    return run_stage(LabeledStage(), PipelineConfig().labeled, root, {}).dataset


def data_path(root: Path, source: Path, tokenizer: Path, labeled_ds) -> dict[str, dict[str, float]]:
    """Run the six stages once in ``root``; seconds and validation seconds per stage."""
    from pipeline import observe
    from pipeline.config import PipelineConfig
    from pipeline.decontaminate.stage import DecontaminateStage
    from pipeline.dedup.stage import DedupStage
    from pipeline.filter import AnnotateStage, FilterStage
    from pipeline.ingest.config import SourceConfig
    from pipeline.ingest.stage import IngestStage
    from pipeline.stage import run_stage
    from pipeline.tokenize import TokenizeConfig, TokenizeStage

    cfg = PipelineConfig()
    cfg.ingest.sources = [SourceConfig(path=str(source))]
    plan = [
        (IngestStage(), cfg.ingest, {}),
        (DedupStage(), cfg.dedup, {"ingest": "ingest"}),
        (AnnotateStage(), cfg.annotate, {"dedup": "dedup"}),
        (FilterStage(), cfg.filter, {"annotate": "annotate"}),
        (DecontaminateStage(), cfg.decontaminate, {"filter": "filter", "labeled": "labeled"}),
        (
            TokenizeStage(),
            TokenizeConfig(tokenizer="pretrained", tokenizer_path=str(tokenizer)),
            {"decontaminate": "decontaminate"},
        ),
    ]
    validation: dict[str, float] = {}
    observe.add_reporter(
        lambda event, data: (
            validation.__setitem__(data["stage"], data["seconds"]) if event == "validation" else None
        )
    )
    out: dict[str, dict[str, float]] = {}
    made = {"labeled": labeled_ds}
    for stage, config, inputs in plan:
        t0 = time.perf_counter()
        res = run_stage(stage, config, root, {k: made[v] for k, v in inputs.items()})
        out[stage.name] = {"seconds": time.perf_counter() - t0, "validation": validation.get(stage.name, 0.0)}
        assert not res.cached
        made[stage.name] = res.dataset
    return out


def worker(engine: str, source: str, tokenizer: str, work: str, repeats: int) -> dict:
    os.environ["TOKENMILL_VALIDATION_ENGINE"] = engine
    gx_import = None
    if engine == "gx":
        t0 = time.perf_counter()
        import great_expectations  # noqa: F401

        gx_import = time.perf_counter() - t0
    labeled_ds = labeled(Path(work) / "labeled")
    t0 = time.perf_counter()
    data_path(Path(work) / "first", Path(source), Path(tokenizer), labeled_ds)
    first = time.perf_counter() - t0
    passes = [
        data_path(Path(work) / f"pass{r}", Path(source), Path(tokenizer), labeled_ds) for r in range(repeats)
    ]
    return {
        "engine": engine,
        "gx_import": gx_import,
        "first_pass": first,
        "stages": {
            s: {k: statistics.median(p[s][k] for p in passes) for k in ("seconds", "validation")}
            for s in STAGES
        },
    }


def setup(path: Path, docs: int, work: Path) -> tuple[Path, Path]:
    """The first ``docs`` records as a file, and a BPE tokenizer trained on the first 200."""
    from pipeline.tokenize.tokenizer import train_bpe

    small = work / "input.jsonl"
    texts = []
    with path.open(encoding="utf-8") as src, small.open("w", encoding="utf-8") as out:
        for n, line in enumerate(src):
            if n < docs:
                out.write(line)
            if n < 200:
                texts.append(json.loads(line).get("text") or "")
    return small, train_bpe([texts], 4096).save(work / "tokenizer")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", type=Path, default=DEFAULT)
    ap.add_argument("--docs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if not args.input.is_file():
        sys.exit(f"{args.input}: no such file (the shared corpora live in ../shared/corpora)")
    work = Path(tempfile.mkdtemp(prefix="stage_fixed_cost-"))
    source, tokenizer = setup(args.input, args.docs, work)
    res = {}
    for engine in ("auto", "duckdb", "gx"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                engine,
                str(source),
                str(tokenizer),
                str(work / engine),
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            sys.exit(f"{engine} worker failed:\n{out.stderr[-3000:]}")
        res[engine] = json.loads(out.stdout.strip().splitlines()[-1])
    engines = ("auto", "duckdb", "gx")
    head = "".join(f" {e + '_s':>9s} {e + '_val':>9s}" for e in engines)
    print(f"{'stage':13s}{head}")
    for s in STAGES:
        cells = "".join(
            f" {res[e]['stages'][s]['seconds']:9.3f} {res[e]['stages'][s]['validation']:9.3f}"
            for e in engines
        )
        print(f"{s:13s}{cells}")

    def worst(e: str, key: str) -> float:
        return max(x[key] for x in res[e]["stages"].values())

    print(
        f"docs={args.docs} repeats={args.repeats} "
        f"fixed_cost_max_s={worst('auto', 'seconds'):.3f} validation_max_s={worst('auto', 'validation'):.3f} "
        f"duckdb_fixed_cost_max_s={worst('duckdb', 'seconds'):.3f} "
        f"duckdb_validation_max_s={worst('duckdb', 'validation'):.3f} "
        f"gx_fixed_cost_max_s={worst('gx', 'seconds'):.3f} gx_validation_max_s={worst('gx', 'validation'):.3f} "
        f"gx_import_s={res['gx']['gx_import']:.2f} first_pass_s={res['auto']['first_pass']:.2f} "
        f"duckdb_first_pass_s={res['duckdb']['first_pass']:.2f} gx_first_pass_s={res['gx']['first_pass']:.2f} "
        f"cpus={os.cpu_count()}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        engine, source, tokenizer, work, repeats = sys.argv[2:7]
        print(json.dumps(worker(engine, source, tokenizer, work, int(repeats))))
    else:
        main()
