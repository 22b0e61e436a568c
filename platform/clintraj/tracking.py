"""MLflow: a tracking server when one is named, else a sqlite store on local disk.

The bare file store (`./mlruns`) is refused by current MLflow, so the local
default is `sqlite:///<root>/mlflow.db` with artifacts in `<root>/artifacts`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
        if found is not None:
            return found.experiment_id
        location = f"{self.artifact_root}/{name}" if self.artifact_root else None
        return client.create_experiment(name, artifact_location=location)

    def ui_command(self) -> str:
        if not self.uri.startswith("sqlite:"):
            return f"open {self.uri} in a browser"
        artifacts = f" --default-artifact-root {self.artifact_root}" if self.artifact_root else ""
        return f"mlflow ui --backend-store-uri {self.uri}{artifacts} --port 5000"
