"""A MEDS dataset folder, checked against the `meds` package's own schemas.

    data/**/*.parquet                subject_id, time, code[, numeric_value, text_value, ...]
    metadata/dataset.json            dataset and ETL names and versions
    metadata/codes.parquet           code, description, parent_codes
    metadata/subject_splits.parquet  subject_id, split (train, tuning, held_out)

Each data file's schema is checked before any row is read, and every streamed batch's values
(`meds.DataSchema` on the batch: no null subject_id or code). A file that does not conform is a
`MedsFormatError` naming the file and the field; values are never quoted. The metadata files
are optional in MEDS: an absent one is recorded, a present one must conform.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import meds
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from flexible_schema.exceptions import SchemaValidationError, TableValidationError

from clintraj.data.rawio import RawDataError


READAHEAD = 2  # record batches a scan decodes ahead (pyarrow's default, 16, holds several row groups' worth)


class MedsFormatError(RawDataError):
    """A folder or file that is not MEDS as the `meds` package defines it."""


def schema_problem(error: Exception) -> str:
    """The fields a `meds` schema check names (its message lists columns and types, never values)."""
    return str(error) if isinstance(error, (SchemaValidationError, TableValidationError)) else type(error).__name__


@dataclass(frozen=True)
class MedsFolder:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @cached_property
    def data_files(self) -> list[Path]:
        """The data shards, in path order; each checked against `meds.DataSchema`."""
        folder = self.root / meds.data_subdirectory
        files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
        if not files:
            raise MedsFormatError(f"{self.root} is not a MEDS dataset: no {meds.data_subdirectory}/**/*.parquet files")
        for file in files:
            check_schema(file, meds.DataSchema)
        return files

    def relative(self, file: Path) -> str:
        return file.relative_to(self.root).as_posix()

    def dataset(self, files: list[Path] | None = None) -> ds.Dataset:
        return ds.dataset([str(f) for f in (files or self.data_files)], format="parquet")

    def fields(self, file: Path) -> list[str]:
        return pq.read_schema(file).names

    @cached_property
    def metadata(self) -> dict:
        """metadata/dataset.json, checked against `meds.DatasetMetadataSchema`; {} when absent."""
        path = self.root / meds.dataset_metadata_filepath
        if not path.is_file():
            return {}
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise MedsFormatError(f"{path}: not valid JSON") from None
        if not isinstance(values, dict):
            raise MedsFormatError(f"{path}: expected a JSON object")
        try:
            meds.DatasetMetadataSchema.validate(values)
        except (SchemaValidationError, TableValidationError) as error:
            cause = getattr(error, "__cause__", None)
            where = "/".join(str(p) for p in getattr(cause, "absolute_path", [])) or "(top level)"
            raise MedsFormatError(f"{path}: field {where} does not conform to meds.DatasetMetadataSchema") from None
        return values

    def codes(self) -> pa.Table | None:
        """metadata/codes.parquet's code column, checked against `meds.CodeMetadataSchema`; None when absent."""
        path = self.root / meds.code_metadata_filepath
        if not path.is_file():
            return None
        check_schema(path, meds.CodeMetadataSchema)
        return pq.read_table(path, columns=["code"])

    def subject_splits(self) -> pa.Table | None:
        """metadata/subject_splits.parquet, checked against `meds.SubjectSplitSchema`; None when absent."""
        path = self.root / meds.subject_splits_filepath
        if not path.is_file():
            return None
        check_schema(path, meds.SubjectSplitSchema)
        table = pq.read_table(path)
        check_values(table, meds.SubjectSplitSchema, path)
        return table


def check_schema(path: Path, schema) -> pa.Schema:
    """The file's Arrow schema, or a MedsFormatError naming the file and the fields at fault."""
    try:
        found = pq.read_schema(path)
    except (pa.ArrowException, OSError):
        raise MedsFormatError(f"{path}: not a readable Parquet file") from None
    try:
        schema.validate(found)
    except SchemaValidationError as error:
        raise MedsFormatError(f"{path}: does not conform to meds.{schema.__name__}: {schema_problem(error)}") from None
    return found


def check_values(table: pa.Table, schema, path: Path | str) -> None:
    """The `meds` nullability rules on a table (or one batch of a file)."""
    try:
        schema.validate(table)
    except (SchemaValidationError, TableValidationError) as error:
        raise MedsFormatError(f"{path}: does not conform to meds.{schema.__name__}: {schema_problem(error)}") from None
