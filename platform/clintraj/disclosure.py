"""What may leave the work folder: the one gate between clinical data and MLflow.

Everything the platform sends to a tracking store (params, tags, artifacts) passes through here:
- a value that is a location loses its credentials and query string (`storage.redact`);
- a table (Parquet, CSV) may hold no identifying column (`IDENTIFYING`: ids, note text, image
  paths) and no date or time of day; a stay appears only as its index in its split
  (`by_index`), the mapping back to stay ids kept in the work folder;
- other files must be of a kind the platform writes for people (figures, its own summaries).
A file that breaks these rules is refused with `DisclosureError` naming the file and the column,
never its content: refusing is a bug to fix where the file is made, not a condition to handle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clintraj.storage import is_uri, redact

# Columns that identify a person, a stay or a document, or carry free text or a file's location.
IDENTIFYING = frozenset({
    "stay_id", "patient_id", "subject_id", "hadm_id", "patientunitstayid",
    "patienthealthsystemstayid", "uniquepid", "note_id", "study_id", "dicom_id", "text", "path",
})
PUBLIC_KINDS = frozenset({".png", ".svg", ".json", ".md", ".txt", ".html", ".yaml", ".csv", ".parquet", ".tex"})


class DisclosureError(ValueError):
    """A file or value that must not leave the work folder."""


def value(item: Any) -> Any:
    """A param's or tag's value as it may leave: a location without credentials or query string."""
    if isinstance(item, (str, Path)) and is_uri(str(item)):
        return redact(str(item))
    return item


def values(items: dict) -> dict:
    return {key: value(item) for key, item in items.items()}


def check_table_columns(columns: list[str], types: list[Any], source: str) -> None:
    for column, kind in zip(columns, types):
        if column.lower() in IDENTIFYING:
            raise DisclosureError(f"{source}: column '{column}' identifies a stay or holds free text; "
                                  "key rows by their index in the split (disclosure.by_index)")
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_time(kind):
            raise DisclosureError(f"{source}: column '{column}' holds dates or times; use hours since admission")


def check_file(path: Path) -> None:
    """Raise DisclosureError unless the file may leave the work folder."""
    path = Path(path)
    if path.suffix.lower() not in PUBLIC_KINDS:
        raise DisclosureError(f"{path}: a {path.suffix or 'suffix-less'} file is not one the platform publishes")
    if path.suffix.lower() == ".parquet":
        schema = pq.read_schema(path)
        check_table_columns(schema.names, schema.types, str(path))
    elif path.suffix.lower() == ".csv":
        header = pd.read_csv(path, nrows=0).columns.tolist()
        check_table_columns(header, [pa.string()] * len(header), str(path))


def log_artifact(client, run_id: str, path: Path, artifact_path: str | None = None) -> None:
    """`MlflowClient.log_artifact`, once the file passed `check_file`."""
    check_file(path)
    client.log_artifact(run_id, str(path), artifact_path)


def log_artifacts(client, run_id: str, folder: Path, artifact_path: str | None = None,
                  local_only: tuple[str, ...] = ()) -> None:
    """Log every file under `folder` (`MlflowClient.log_artifact`, the folder layout kept) once it
    passed `check_file`, but those `local_only` names (paths relative to `folder`): they are made
    for the person at this machine (e.g. a stay's own events) and stay in the work folder."""
    folder = Path(folder)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and str(p.relative_to(folder)) not in local_only]
    for path in files:
        check_file(path)
    for path in files:
        parent = path.parent.relative_to(folder).as_posix()
        where = "/".join(part for part in (artifact_path, parent if parent != "." else None) if part)
        client.log_artifact(run_id, str(path), where or None)


def by_index(frame: pd.DataFrame, key: str = "stay_id") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the frame keyed by `index`, each row's position in `key` order, the `key` column gone;
    the mapping index -> key, which stays in the work folder)."""
    ordered = frame.sort_values(key, kind="stable").reset_index(drop=True)
    mapping = pd.DataFrame({"index": range(len(ordered)), key: ordered[key].to_numpy()})
    public = ordered.drop(columns=key)
    public.insert(0, "index", range(len(ordered)))
    return public, mapping
