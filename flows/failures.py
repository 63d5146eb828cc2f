"""What a failed flow run leaves behind: a markdown artifact and a line in the failures report."""

from __future__ import annotations

from typing import Any

from pipeline import storage


def failure_markdown(flow_name: str, flow_run: Any, state: Any) -> str:
    params = dict(getattr(flow_run, "parameters", None) or {})
    when = getattr(state, "timestamp", None)
    lines = [
        f"## {flow_name} failed: run `{flow_run.name}` ({flow_run.id})",
        "",
        f"- when: {when.isoformat() if when else 'unknown'}",
        f"- state: {state.name}",
        f"- data_dir: `{params.get('data_dir', 'data')}`",
        f"- inputs: `{params.get('inputs') or 'latest published'}`",
        "",
        "**Reason**",
        "",
        "```",
        (state.message or "no message").strip(),
        "```",
        "",
        (
            "Nothing was published: a stage publishes its dataset atomically or not at all. "
            "Data errors (bad input, failed validation) were not retried; I/O errors were retried "
            "with exponential backoff before failing. Fix the cause and re-run the same deployment."
        ),
        "",
    ]
    return "\n".join(lines)


def record_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """on_failure hook: the reason goes to a Prefect markdown artifact and to
    `<data root>/reports/failures.md` (newest last). Must never raise."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    md = failure_markdown(flow.name, flow_run, state)
    params = dict(getattr(flow_run, "parameters", None) or {})
    try:
        report = storage.resolve_root(str(params.get("data_dir") or "data")) / "reports" / "failures.md"
        report.parent.mkdir(parents=True, exist_ok=True)
        new = not report.exists()
        with report.open("a", encoding="utf-8") as f:
            f.write(("# tokenmill failures\n\n" if new else "") + md + "\n")
    except OSError:
        pass  # the artifact below still carries the reason
    with get_client(sync_client=True) as client:
        client.create_artifact(
            ArtifactCreate(
                type="markdown",
                key=f"{flow.name}-failure".lower().replace("_", "-"),
                description=f"{flow.name}: why the run failed",
                data=md,
                flow_run_id=flow_run.id,
            )
        )
