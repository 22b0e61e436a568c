"""MEDS dataset folders for the MEDS reader's tests: any event table written as MEDS (the `meds`
package's schemas), the MIMIC-IV demo's MEDS stream, and a synthetic ICU dataset with a planted
mortality signal (shared by tests/test_meds.py and tests/test_meds_end_to_end.py)."""

from __future__ import annotations

import json
from pathlib import Path

import meds
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
QUICKSTART = (SHARED_DATA / "mimic-iv-demo-2.2" / "_derived"
              / "mimic_iv_demo_meds_events.standardmodelbio_quickstart.parquet")
SPLIT_NAMES = (meds.train_split, meds.tuning_split, meds.held_out_split)


def write_meds(events: pd.DataFrame, out: Path, shards: int = 3, row_group_size: int = 50_000,
               splits: tuple[float, float, float] | None = (0.8, 0.1, 0.1), sort: bool = True,
               metadata: dict | None = None) -> Path:
    """`events` (subject_id, time, code, numeric_value[, text_value]) as a MEDS folder: data shards
    of whole subjects (each sorted by time, timeless rows first), codes.parquet listing every
    code, subject_splits.parquet (a seeded shuffle by `splits`), dataset.json."""
    out = Path(out)
    (out / meds.data_subdirectory).mkdir(parents=True, exist_ok=True)
    (out / "metadata").mkdir(exist_ok=True)
    if sort:
        events = events.sort_values(["subject_id", "time"], na_position="first", kind="stable")
    subjects = events["subject_id"].unique()
    for index, part in enumerate(np.array_split(subjects, shards)):
        table = pa.Table.from_pandas(events[events["subject_id"].isin(part)], preserve_index=False)
        pq.write_table(meds.DataSchema.align(table), out / meds.data_subdirectory / f"{index}.parquet",
                       row_group_size=row_group_size)
    codes = sorted(events["code"].unique())
    pq.write_table(meds.CodeMetadataSchema.align(pa.table({
        "code": pa.array(codes, pa.string()), "description": pa.nulls(len(codes), pa.string()),
        "parent_codes": pa.nulls(len(codes), pa.list_(pa.string()))})), out / meds.code_metadata_filepath)
    if splits is not None:
        order = np.random.default_rng(0).permutation(len(subjects))
        bounds = np.cumsum(np.round(np.array(splits) * len(subjects)).astype(int))[:2]
        names = np.select([order < bounds[0], order < bounds[1]], SPLIT_NAMES[:2], SPLIT_NAMES[2])
        pq.write_table(pa.table({"subject_id": pa.array(subjects, pa.int64()), "split": names}),
                       out / meds.subject_splits_filepath)
    (out / meds.dataset_metadata_filepath).write_text(json.dumps(
        metadata or {"dataset_name": "test", "etl_name": "tests/meds_folders.py", "meds_version": meds.__version__}))
    return out


def quickstart_events() -> pd.DataFrame:
    """The MIMIC-IV demo's MEDS event stream (PROVENANCE.md): `value` is MEDS' numeric_value, its
    `table` column says nothing; rows in the file's own order (not MEDS order)."""
    frame = pd.read_parquet(QUICKSTART)
    return frame.rename(columns={"value": "numeric_value"}).drop(columns="table")


def synthetic_icu(subjects: int = 600, seed: int = 0) -> pd.DataFrame:
    """MEDS events of one hospital admission with one ICU stay per subject (MIMIC-IV ETL codes):
    demographics, hourly heart rate, lactate every 4 h, an occasional vasopressor and diagnosis.
    A latent severity raises lactate and heart rate from the first hours on and makes death (the
    hospital discharge disposition DIED, with a MEDS_DEATH record) likely: a planted signal."""
    rng = np.random.default_rng(seed)
    subject = np.arange(1, subjects + 1) * 7 + 10_000_000
    severity = rng.normal(size=subjects)
    died = rng.random(subjects) < 1 / (1 + np.exp(-(3.0 * severity - 1.5)))
    start = pd.Timestamp("2150-01-01") + pd.to_timedelta(rng.integers(0, 3650 * 24, subjects), unit="h")
    icu_in = start + pd.to_timedelta(rng.uniform(1, 12, subjects), unit="h")
    icu_hours = rng.uniform(50, 160, subjects)
    icu_out = icu_in + pd.to_timedelta(icu_hours, unit="h")
    hospital_out = icu_out + pd.to_timedelta(np.where(died, rng.uniform(0, 2, subjects), rng.uniform(12, 96, subjects)),
                                             unit="h")
    birth = start - pd.to_timedelta(rng.uniform(20, 90, subjects) * 365.25 * 24, unit="h")

    def rows(codes, times, values=None, who=slice(None)):
        ids = subject[who]
        return pd.DataFrame({"subject_id": ids, "time": times, "code": codes,
                             "numeric_value": np.nan if values is None else values})

    parts = [
        rows(np.where(rng.random(subjects) < 0.5, "GENDER//F", "GENDER//M"), pd.NaT),
        rows("MEDS_BIRTH", birth),
        rows("HOSPITAL_ADMISSION//EW EMER.//EMERGENCY ROOM", start),
        rows("ICU_ADMISSION//Medical Intensive Care Unit (MICU)", icu_in),
        rows("ICU_DISCHARGE//Medical Intensive Care Unit (MICU)", icu_out),
        rows(np.where(died, "HOSPITAL_DISCHARGE//DIED", "HOSPITAL_DISCHARGE//HOME"), hospital_out),
        rows("MEDS_DEATH", hospital_out[died], who=died),
        rows("DIAGNOSIS//ICD//10//A419", hospital_out[severity > 0.5], who=severity > 0.5),  # at discharge
    ]
    for code, every, mean, scale, noise in (("LAB//220045//bpm", 1.0, 85.0, 15.0, 6.0),
                                            ("LAB//50813//mmol/L", 4.0, 2.5, 1.2, 0.3)):
        steps = (icu_hours // every).astype(int) + 1
        who = np.repeat(np.arange(subjects), steps)
        offset = np.concatenate([np.arange(n) * every for n in steps]) + rng.uniform(0, 0.5, len(who))
        value = mean + scale * severity[who] + rng.normal(0, noise, len(who))
        parts.append(rows(code, icu_in[who] + pd.to_timedelta(offset, unit="h"), value.astype(np.float32), who))
    pressor = rng.random(subjects) < 1 / (1 + np.exp(-(severity - 0.5)))
    parts.append(rows("MEDICATION//START//Norepinephrine", icu_in[pressor] + pd.Timedelta(hours=3), who=pressor))
    events = pd.concat(parts, ignore_index=True)
    return events.astype({"subject_id": "int64", "time": "datetime64[us]", "numeric_value": "float32"})
