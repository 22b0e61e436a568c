"""MLflow: a tracking server when one is named, else a sqlite store on local disk.

The bare file store (`./mlruns`) is refused by current MLflow, so the local
default is `sqlite:///<root>/mlflow.db` with artifacts in `<root>/artifacts`.
Our experiments are tagged as machine-learning ones (MLflow 3's `mlflow.experimentKind`). The
UI of MLflow 3.17 decides what an experiment opens on by its own GenAI / Model training switch
(kept in the browser, GenAI by default), so the link the jobs print (`runs_url`) also says
`workflowType=machine_learning`: it opens the runs table, not the GenAI overview of traces.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # the UI's "Machine learning"
TRIAL_FILTER = "tags.task IS NOT NULL"  # the trial runs: one model, initialisation and task each
UI_PORT = 5000
# The process a run belongs to (the job's driver; a trial's run inherits its sweep's), so that a
# run left RUNNING by a killed job is found and ended as KILLED by the next job over the store.
OWNER_TAG = "clintraj.owner"

log = logging.getLogger(__name__)
_closed: set[tuple[str, str]] = set()  # (store, experiment) already cleared of abandoned runs here


def owner_tags() -> dict[str, str]:
    """This process as a run's owner: its host, pid and start time (a pid reused later is another
    process)."""
    import psutil

    me = psutil.Process()
    return {OWNER_TAG: f"{socket.gethostname()}:{me.pid}:{int(me.create_time())}"}


def owner_gone(owner: str) -> bool:
    """Whether the owning process has ended; a process on another host is not ours to judge."""
    import psutil

    host, pid, started = owner.rsplit(":", 2)
    if host != socket.gethostname():
        return False
    try:
        return int(psutil.Process(int(pid)).create_time()) != int(started)
    except psutil.NoSuchProcess:
        return True


@dataclass(frozen=True)
class Tracking:
    uri: str
    artifact_root: str | None  # None: the server decides

    @classmethod
    def resolve(cls, uri: str | None, local_root: Path) -> "Tracking":
        """A given URI (flag, then $MLFLOW_TRACKING_URI) wins; else the local sqlite store."""
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            return cls(uri, None)
        root = Path(local_root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri())

    def experiment(self, name: str) -> str:
        """The id of experiment `name`, created here (on the driver, once) if absent."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.uri)
        found = client.get_experiment_by_name(name)
        if found is None:
            location = f"{self.artifact_root}/{name}" if self.artifact_root else None
            return client.create_experiment(name, artifact_location=location, tags=dict([EXPERIMENT_KIND]))
        if EXPERIMENT_KIND[0] not in found.tags:  # made before we tagged them, or by someone else
            client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
        if (self.uri, found.experiment_id) not in _closed:
            _closed.add((self.uri, found.experiment_id))
            self.end_abandoned_runs(found.experiment_id)
        return found.experiment_id

    def end_abandoned_runs(self, experiment_id: str) -> int:
        """Mark KILLED the runs left RUNNING by a job whose process is gone (killed, or its machine
        restarted); return how many. Runs without an owner, or owned elsewhere, are left as they are."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.uri)
        ended = 0
        for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=10_000):
            owner = run.data.tags.get(OWNER_TAG)
            if owner and owner_gone(owner):
                client.set_terminated(run.info.run_id, "KILLED")
                ended += 1
        if ended:
            log.warning("%d MLflow runs left RUNNING by a job that is gone: marked KILLED", ended)
        return ended

    def ui_command(self) -> str:
        if not self.uri.startswith("sqlite:"):
            return f"open {self.uri} in a browser"
        artifacts = f" --default-artifact-root {self.artifact_root}" if self.artifact_root else ""
        return f"mlflow ui --backend-store-uri {self.uri}{artifacts} --port {UI_PORT}"

    def runs_url(self, experiment_id: str, base: str | None = None) -> str:
        """The experiment's runs table in the UI's Model training view: the trial runs, sorted by
        name, listed flat (the UI nests child runs, collapsed, under their sweep unless the table is
        filtered and sorted by something other than time). `base`: the UI's address, by default the
        tracking server's, or the local `ui_command`'s."""
        if base is None:
            base = self.uri if self.uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{UI_PORT}"
        query = urlencode({"workflowType": "machine_learning", "searchFilter": TRIAL_FILTER,
                           "orderByKey": "tags.`mlflow.runName`", "orderByAsc": "true"}, quote_via=quote)
        return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"
