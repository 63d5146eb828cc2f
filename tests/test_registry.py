"""One declaration per stage and per signal: everything derived from the registries agrees."""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

from pipeline.config import PipelineConfig, load_config
from pipeline.errors import ConfigError, is_transient
from pipeline.stages import BY_NAME, ORDER, STAGES, check_registry, scheduled


def test_pipeline_config_has_one_section_per_stage_typed_by_its_model():
    fields = PipelineConfig.model_fields
    assert list(fields) == ["engine", *ORDER]
    for stage in STAGES:
        assert fields[stage.name].annotation is stage.config_model
        assert isinstance(PipelineConfig().stage_config(stage.name), stage.config_model)


def test_flows_are_generated_from_the_registry():
    import inspect

    from flows import stages as flow_module

    assert list(flow_module.STAGE_FLOWS) == ORDER
    for stage in STAGES:
        f = flow_module.STAGE_FLOWS[stage.name]
        assert getattr(flow_module, f"{stage.name}_flow") is f  # the deployments' entrypoint
        assert f.name == stage.name and f.description == stage.description
        sig = inspect.signature(f.fn)
        assert list(sig.parameters) == ["config", "data_dir", "inputs"]
        assert sig.parameters["config"].annotation is stage.config_model
        # The UI's form: the parameter schema carries the stage's config model.
        assert stage.config_model.__name__ in f.parameters.definitions
        # Parameters from the UI (JSON) validate into the stage's config model.
        params = f.validate_parameters({"config": stage.config_model().model_dump(mode="json")})
        assert isinstance(params["config"], stage.config_model)


def test_deployments_follow_the_stages_schedules():
    from flows import ops

    specs = ops.deployment_specs()
    per_stage = [s["entrypoint"].rsplit(":", 1)[1] for s in specs if s["name"] == ops.DEPLOYMENT]
    assert per_stage == [f"{n}_flow" for n in ORDER] + ["end_to_end"]
    by_name = {s["name"]: s for s in specs}
    assert by_name["nightly-data"]["parameters"]["stages"] == [scheduled("data")[-1]]
    assert by_name["weekly-training"]["parameters"]["stages"] == [scheduled("training")[-1]]
    chained = {
        s["entrypoint"].rsplit(":", 1)[1]: [t["match"]["tokenmill.stage"] for t in s.get("triggers", [])]
        for s in specs
    }
    for stage in STAGES:
        expected = list(stage.inputs) if stage.schedule == "data" else []
        assert chained[f"{stage.name}_flow"] == expected


def test_cli_names_the_registered_stages():
    from flows.cli import app

    out = CliRunner().invoke(app, ["run", "no_such_stage"])
    assert out.exit_code == 2
    assert ", ".join(ORDER) in " ".join(out.output.split())


def test_a_registry_that_disagrees_with_itself_fails_at_once():
    ingest, dedup = BY_NAME["ingest"], BY_NAME["dedup"]
    with pytest.raises(TypeError, match="input 'ingest' is not declared before it"):
        check_registry([dedup, ingest])
    with pytest.raises(TypeError, match="its name is taken"):
        check_registry([ingest, ingest])


# -- signals -------------------------------------------------------------------------------------


def test_annotate_and_filter_configs_are_derived_from_the_signals():
    from pipeline.filter.config import AnnotateConfig, FilterConfig
    from pipeline.filter.signals import SIGNALS, declared_columns, rule_sets

    for s in SIGNALS:
        assert set(s.settings) <= set(AnnotateConfig.model_fields), s.name
        for rs in s.rule_sets:
            assert FilterConfig.model_fields[rs.name].annotation is rs.config
    # Every default rule reads a declared column, and the rule order is the registry's.
    from pipeline.filter.signals import build_rules

    rules = build_rules(FilterConfig())
    assert rules and all(r.column in declared_columns() for r in rules)
    order = [rs.name for rs in rule_sets()]
    groups = [r.name.split(".")[0] for r in rules]
    assert groups == sorted(groups, key=order.index)


def test_a_rule_naming_a_column_no_signal_computes_is_a_config_error():
    with pytest.raises(
        ConfigError, match=r"filter\.gopher_repetition\.max_top_7gram_char_frac.*gopher_top_7gram"
    ):
        load_config(None, ['filter.gopher_repetition.max_top_ngram_char_frac={"7": 0.1}'])
    # the same n-gram size the signal does compute is fine
    cfg = load_config(None, ['filter.gopher_repetition.max_top_ngram_char_frac={"3": 0.1}'])
    assert cfg.filter.gopher_repetition.max_top_ngram_char_frac == {3: 0.1}


def test_annotate_version_follows_every_signal_version():
    from pipeline.filter.annotate import AnnotateStage
    from pipeline.filter.signals import SIGNALS

    for s in SIGNALS:
        assert f"{s.name}={s.version}" in AnnotateStage.version


# -- robustness ------------------------------------------------------------------------------------


def test_stdlib_docstrings_parse_identically_in_many_threads_at_once():
    """CPython 3.11's ast.parse is not thread-safe; the built-in corpus parses under a lock."""
    from pipeline.sources.builtin import docstrings, stdlib_files

    files = stdlib_files()[:160]
    expected = list(docstrings(files, 40))
    results: list[list | BaseException] = [None] * 8  # type: ignore[list-item]

    def work(i: int) -> None:
        try:
            results[i] = list(docstrings(files, 40))
        except BaseException as e:  # the failure this guards against is a SystemError
            results[i] = e

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == expected for r in results), [type(r).__name__ for r in results if r != expected]


@pytest.mark.parametrize(
    "exc, retried",
    [
        (OSError("connection reset"), True),
        (TimeoutError("read timed out"), True),
        (ConnectionError("refused"), True),
        (OSError(28, "No space left on device"), False),
        (SystemError("AST constructor recursion depth mismatch"), False),
        (MemoryError(), False),
        (KeyError("text"), False),
        (ConfigError("bad"), False),
    ],
)
def test_only_transient_errors_are_retried(exc, retried):
    from flows.runtime import retry_on_io

    class State:
        def result(self):
            raise exc

    assert is_transient(exc) is retried
    assert retry_on_io(None, None, State()) is retried


def test_store_client_errors_are_transient():
    cls = type("ReadTimeoutError", (Exception,), {"__module__": "botocore.exceptions"})
    assert is_transient(cls("timed out"))
