"""Headless Chromium (Debian's chromium package) over a page or a local MLflow UI, for the report
and MLflow UI tests: the DOM after the page ran its scripts, and an MLflow server on loopback."""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest


def browser() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return found


def dump_dom(url: str, budget_ms: int = 5000, window: tuple[int, int] = (1400, 900)) -> str:
    """The DOM once the page's scripts ran for `budget_ms` of virtual time (paused while it fetches)."""
    done = subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           f"--window-size={window[0]},{window[1]}", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def text(dom: str) -> str:
    """The page's visible text, whitespace collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))).strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(backend_uri: str, artifact_root: Path):
    """`mlflow server` over a store, on a free loopback port, in its own process group (stopped by
    signalling that group); yields its base URL once /health answers."""
    port = free_port()
    log = Path(artifact_root) / "mlflow-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", backend_uri,
             "--default-artifact-root", str(artifact_root), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})  # 2 processes, not 9
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).read() == b"OK":
                    break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                pytest.fail(f"the MLflow server did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def check_runs_view(tracking, experiment: str, trial_names: list[str], artifact_root: Path) -> str:
    """Open the link the jobs print (`Tracking.runs_url`) in a browser over an MLflow server on the
    store: it must land on the experiment's runs table, not the GenAI overview, and list every
    trial run by its name. Returns the page's text."""
    from mlflow.tracking import MlflowClient

    assert trial_names, "no trial run to look for"
    found = MlflowClient(tracking.uri).get_experiment_by_name(experiment)
    assert found.tags.get("mlflow.experimentKind") == "custom_model_development"
    with mlflow_server(tracking.uri, artifact_root) as base:
        url = tracking.runs_url(found.experiment_id, base)
        for budget in (5000, 30000):  # the table fills after the UI's API calls; a loaded machine is slower
            page = text(dump_dom(url, budget, window=(1400, 1600)))
            if all(name in page for name in trial_names):
                break
    assert page.startswith(f"Runs - Experiment {found.experiment_id} - MLflow"), page[:300]
    assert "Token Usage" not in page and "Traces 0" not in page  # not the GenAI overview
    missing = [name for name in trial_names if name not in page]
    assert not missing, f"not listed: {missing}\n{page[:3000]}"
    assert f"{len(trial_names)} matching runs" in page  # the trial runs and nothing else
    return page
