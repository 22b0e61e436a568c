"""The cxr modality (MIMIC-CXR-JPG).

cxr: the paper's join of the CXR metadata and icustays on subject_id; an image
counts for a stay when StudyDate+StudyTime is strictly inside (intime, outtime)
and ViewPosition is AP. Every such image is an event at its study time; the
per-stay table takes the most recent one of a window (`data.modalities`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from clintraj.data.mimic import tables as mt
from clintraj.data.mimic.config import HOUR, Counts, MimicConfig
from clintraj.data.rawio import Quarantine, stream_table

METADATA_FILE = mt.CXR_METADATA.path.split("/", 1)[1]  # below the MIMIC-CXR-JPG root
CXR_EVENT_COLUMNS = ("stay_id", "time_hours", "dicom_id", "study_id", "path")


def study_datetime(study_date: pd.Series, study_time: pd.Series) -> pd.Series:
    """StudyDate (yyyymmdd) + StudyTime (hhmmss.fff with its leading zeros lost: 80556.875
    is 08:05:56.875) -> datetime64; NaT when either is missing or not a valid date / time."""
    day = pd.to_datetime(study_date.astype("string").str.strip(), format="%Y%m%d", errors="coerce")
    hhmmss = pd.to_numeric(study_time, errors="coerce").astype("float64")
    hh = np.floor(hhmmss / 10_000)
    mm = np.floor(hhmmss / 100) % 100
    ss = hhmmss - hh * 10_000 - mm * 100
    valid = (hhmmss >= 0) & (hh < 24) & (mm < 60) & (ss < 60)
    millis = np.round((hh * 3600 + mm * 60 + ss) * 1000).where(valid)
    return (day + pd.to_timedelta(millis, unit="ms")).where(valid & day.notna())


def cxr_modality(root: Path, stays: pd.DataFrame, config: MimicConfig,
                 quarantine: Quarantine) -> tuple[pd.DataFrame, dict]:
    """The paper's CXR selection as events: metadata joined to the cohort stays on subject_id, images
    strictly inside (intime, outtime), views in `cxr_views`, each at its study time (a window's
    per-stay table takes its most recent one)."""
    root = Path(root)
    windows = stays.set_index("stay_id")[["subject_id", "intime", "outtime"]]
    columns = ["dicom_id", "subject_id", "study_id", "ViewPosition", "StudyDate", "StudyTime"]
    detail, pairs = Counts(), []
    chunks = stream_table(root, METADATA_FILE, columns, chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc="MIMIC-CXR metadata", unit="chunk", disable=not config.progress):
        detail["images in the metadata"] += len(chunk)
        quarantine.count_read(METADATA_FILE, len(chunk))
        subject = pd.to_numeric(chunk["subject_id"], errors="coerce")
        cohort = subject.isin(windows["subject_id"])
        quarantine.count_filtered(METADATA_FILE, "subject not in the cohort", (~cohort).sum())
        chunk = chunk[cohort].assign(subject_id=subject)
        detail["images of cohort subjects (join on subject_id)"] += len(chunk)
        when = study_datetime(chunk["StudyDate"], chunk["StudyTime"])
        study = pd.to_numeric(chunk["study_id"], errors="coerce")
        bad = when.isna() | study.isna() | chunk["dicom_id"].isna()
        quarantine.add(METADATA_FILE, "StudyDate/StudyTime invalid or dicom_id/study_id missing", chunk.index[bad])
        images = pd.DataFrame({"subject_id": chunk["subject_id"].astype("int64"), "t": when, "study_id": study,
                               "dicom_id": chunk["dicom_id"].str.strip(), "view": chunk["ViewPosition"].str.strip(),
                               "row": chunk.index})[~bad.to_numpy()]
        joined = images.merge(windows.reset_index(), on="subject_id")
        joined = joined[(joined["t"] > joined["intime"]) & (joined["t"] < joined["outtime"])]
        detail["(image, stay) pairs strictly inside the stay"] += len(joined)
        inside = joined["row"].nunique()
        quarantine.count_filtered(METADATA_FILE, "study time strictly inside no cohort stay", len(images) - inside)
        joined = joined[joined["view"].isin(config.cxr_views)]
        detail[f"of them with view {'/'.join(config.cxr_views)}"] += len(joined)
        quarantine.count_filtered(METADATA_FILE, f"view not {'/'.join(config.cxr_views)}",
                                  inside - joined["row"].nunique())
        pairs.append(joined)
    chosen = pd.concat(pairs, ignore_index=True).astype({"study_id": "int64"})
    chosen["path"] = [mt.cxr_image_path(s, st, d) for s, st, d in
                      zip(chosen["subject_id"], chosen["study_id"], chosen["dicom_id"])]
    if config.cxr_require_file:
        exists = np.array([(root / p).is_file() for p in chosen["path"]], dtype=bool)
        quarantine.add(METADATA_FILE, "image file missing below the cxr root",
                       chosen.loc[~exists, "row"].drop_duplicates())
        detail["of them without their image file"] += int((~exists).sum())
        chosen = chosen[exists]
    quarantine.count_used(METADATA_FILE, chosen["row"].nunique())
    chosen["time_hours"] = (chosen["t"] - chosen["intime"]) / HOUR
    events = chosen.sort_values(["stay_id", "time_hours", "dicom_id"], kind="stable")[list(CXR_EVENT_COLUMNS)]
    return events.reset_index(drop=True), dict(detail)
