#!/usr/bin/env bash
# Takes the README's Prefect UI screenshots from a real run: a server, a worker, one end-to-end
# run on the built-in corpus (short training), then a filter trigger with a new threshold that
# chains into tokenize. Needs Debian's `chromium` (apt-get install chromium).
#   usage: tools/ui_screenshots.sh [DATA_DIR] [OUT_DIR]
set -euo pipefail
DATA=${1:-/tmp/tokenmill-ui}
OUT=${2:-docs/img}
TM=.venv/bin/tokenmill
PY=.venv/bin/python
PORT=4200
export PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
mkdir -p "$OUT" "$DATA"
# Each service runs in its own session (setsid), so its process group holds everything it starts.
# On exit, newest first: SIGTERM to the group, wait for it to go (the worker lets a run in
# progress finish within --grace-seconds), then SIGKILL whatever is left.
groups=()
cleanup() {
  local i g
  for ((i = ${#groups[@]} - 1; i >= 0; i--)); do
    g=${groups[i]}
    kill -TERM -- "-$g" 2>/dev/null || continue
    for _ in $(seq 60); do kill -0 -- "-$g" 2>/dev/null || break; sleep 1; done
    kill -KILL -- "-$g" 2>/dev/null || true
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

setsid $TM server --data-dir "$DATA" --port $PORT > "$DATA/server.log" 2>&1 & groups+=($!)
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
for _ in $(seq 120); do curl -sf $PREFECT_API_URL/health >/dev/null && break; sleep 1; done

$TM deploy --data-dir "$DATA"
setsid $TM worker --grace-seconds 10 > "$DATA/worker.log" 2>&1 & groups+=($!)

# A whole pipeline run, reported to this server (training shortened: the point is the UI).
$TM run --data-dir "$DATA" --config builtin-corpus \
  --set pretrain.max_steps=60 --set pretrain.eval_interval=30 --set finetune.max_steps=40

# Iterating on data: a new filter threshold through the deployment; tokenize follows by event.
$TM trigger filter --data-dir "$DATA" --set gopher_quality.min_words=20 --wait 900
for _ in $(seq 180); do
  n=$($PY - <<'PY'
from prefect import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
with get_client(sync_client=True) as c:
    runs = c.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["tokenize"])))
    print(sum(1 for r in runs if r.state and r.state.is_final() and r.deployment_id))
PY
)
  [ "$n" -ge 1 ] && break; sleep 5
done

$PY - "$OUT" <<'PY'
import os, signal, subprocess, sys
from prefect import get_client
from prefect.client.schemas.filters import (
    FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterState,
    FlowRunFilterStateName,
)
from prefect.client.schemas.sorting import FlowRunSort

out, ui = sys.argv[1], "http://127.0.0.1:4200"
with get_client(sync_client=True) as c:
    def latest(flow, deployed=None):
        """The newest run of a flow that did its work (Completed, not Cached or Scheduled)."""
        runs = c.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Completed"])),
                deployment_id=FlowRunFilterDeploymentId(is_null_=not deployed) if deployed is not None else None,
            ),
            sort=FlowRunSort.START_TIME_DESC, limit=1)
        return runs[0].id
    pages = {
        "runs": f"{ui}/runs",
        "end-to-end-run": f"{ui}/runs/flow-run/{latest('end_to_end', deployed=False)}",
        "filter-run": f"{ui}/runs/flow-run/{latest('filter', deployed=True)}",
        "tokenize-run": f"{ui}/runs/flow-run/{latest('tokenize', deployed=True)}",
        "artifacts": f"{ui}/artifacts",
        "deployments": f"{ui}/deployments",
        "automations": f"{ui}/automations",
    }
for name, url in pages.items():
    # chromium forks helpers; its own session lets the whole group be killed, whatever happens
    p = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          "--window-size=1600,1000", "--virtual-time-budget=20000",
                          f"--screenshot={out}/{name}.png", url],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        if p.wait(timeout=120) != 0:
            sys.exit(f"chromium failed on {url} (exit code {p.returncode})")
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    print(f"{out}/{name}.png  {url}")
PY
