"""The discharge_note and radiology_note modalities (MIMIC-IV-Note).

discharge_note / radiology_note: notes of the stay's admission (subject_id,
hadm_id), cleaned (`clean_note_text`), one event per note at charttime - intime: it
may be negative (charted before the ICU stay) or beyond outtime (discharge
summaries are charted at discharge). Several ICU stays of one admission share its
notes. Which notes a task sees is its window's business (`data.windows`).
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from clintraj.data.mimic import tables as mt
from clintraj.data.event_parts import PartWriter, Parts, key_parts, parts_for, stay_parts
from clintraj.data.mimic.config import HOUR, MODALITY_BY_NAME, Counts, MimicConfig
from clintraj.data.rawio import Quarantine, parse_datetime, stream_table

_NOTE_FILES = {  # below the MIMIC-IV-Note root
    "discharge_note": mt.DISCHARGE.path.split("/", 1)[1],
    "radiology_note": mt.RADIOLOGY.path.split("/", 1)[1],
}

_MOJIBAKE = re.compile(  # UTF-8 bytes read as cp1252 / latin-1: 'â€™', 'Ã©', 'Â°', ...
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    "\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122]{1,3}")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]")  # C0 (but tab, newline), DEL, C1 (\x95 ...), U+FFFD
_DEID_HEADER = re.compile(r"^[ \t]*(?:name|unit no|admission date|discharge date|date of birth)[ \t]*:.*$",
                          re.MULTILINE)
_PLACEHOLDER = re.compile(r"_{3,}")  # de-identified values ('___')
_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def _drop_mojibake(match: re.Match) -> str:
    """'' for a run that decodes as UTF-8 read as cp1252 / latin-1, else the run unchanged."""
    for encoding in ("cp1252", "latin-1"):
        try:
            match.group().encode(encoding).decode("utf-8")
            return ""
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue
    return match.group()


def clean_note_text(text: str) -> str:
    """Lower case; de-identification header lines (name, unit no, admission / discharge date,
    date of birth) and '___' placeholders removed; broken unicode (mojibake, control
    characters such as \\x95, U+FFFD) removed; whitespace tidied. Punctuation and stop-words stay."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _MOJIBAKE.sub(_drop_mojibake, text)
    text = _CONTROL.sub(" ", text).lower()
    text = _DEID_HEADER.sub("", text)
    text = _PLACEHOLDER.sub(" ", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _note_path(root: Path, name: str) -> str:
    """The note file below the MIMIC-IV-Note root ('note/<file>'), or directly in it."""
    relative = _NOTE_FILES[name]
    flat = relative.split("/", 1)[1]
    return flat if not (Path(root) / relative).is_file() and (Path(root) / flat).is_file() else relative


def note_modality(root: Path, name: str, stays: pd.DataFrame, config: MimicConfig, quarantine: Quarantine,
                  scratch: Path | None = None) -> tuple[pd.DataFrame | Parts, dict]:
    """One event per note (stay_id, time_hours, note_index: its place in the admission's notes in
    charttime order, text) of each stay's admission (subject_id, hadm_id), sorted by stay and
    note_index, and filtering counts. With `scratch`, the notes go to disk as they are read, by
    admission, and the events by stay range (`event_parts`: the cohort's note text is gigabytes
    at full MIMIC-IV-Note), and come back as `Parts`; without it, as one DataFrame."""
    if scratch is None:
        with tempfile.TemporaryDirectory(prefix="clintraj-notes-") as folder:
            events, detail = note_modality(root, name, stays, config, quarantine, Path(folder))
            return pd.concat(list(events.frames()), ignore_index=True), detail
    relative = _note_path(root, name)
    keys = stays[["subject_id", "hadm_id"]].dropna().drop_duplicates()
    admissions = pd.MultiIndex.from_arrays([keys["subject_id"].astype("int64"), keys["hadm_id"].astype("int64")])
    parts = parts_for(stays["stay_id"].to_numpy())
    by_admission, part_of = PartWriter(scratch / f"{name}-by-admission", parts), key_parts(parts)
    detail = Counts()
    chunks = stream_table(root, relative, ["subject_id", "hadm_id", "charttime", "text"],
                          chunk_rows=config.chunk_rows)
    for _, chunk in tqdm(chunks, desc=f"MIMIC {name}", unit="chunk", disable=not config.progress):
        detail["notes read"] += len(chunk)
        quarantine.count_read(relative, len(chunk))
        detail["notes without hadm_id (not linked to an admission)"] += int(chunk["hadm_id"].isna().sum())
        subject = pd.to_numeric(chunk["subject_id"], errors="coerce").fillna(-1).astype("int64")
        hadm = pd.to_numeric(chunk["hadm_id"], errors="coerce").fillna(-1).astype("int64")
        linked = pd.MultiIndex.from_arrays([subject, hadm]).isin(admissions)
        quarantine.count_filtered(relative, "not a note of a cohort admission", (~linked).sum())
        chunk, subject, hadm = chunk[linked], subject[linked], hadm[linked]
        detail["notes of cohort admissions"] += len(chunk)
        time = parse_datetime(chunk["charttime"])
        text = chunk["text"].fillna("").map(clean_note_text)
        quarantine.add(relative, "charttime missing or unparseable", chunk.index[time.isna()])
        quarantine.add(relative, "text empty after cleaning", chunk.index[time.notna() & text.eq("")])
        ok = (time.notna() & text.ne("")).to_numpy()
        notes = pd.DataFrame({"subject_id": subject[ok].to_numpy(), "hadm_id": hadm[ok].to_numpy(),
                              "t": time[ok].to_numpy(), "row": chunk.index[ok].to_numpy("int64"),
                              "text": text[ok].astype("string").array})
        by_admission.append(notes, part_of(notes["hadm_id"].to_numpy()))
    by_admission = by_admission.close()
    events = PartWriter(scratch / f"{name}-by-stay", parts)
    in_range = stay_parts(stays["stay_id"].to_numpy())
    base = stays[["stay_id", "subject_id", "hadm_id", "intime", "dischtime"]].dropna(subset=["hadm_id"])
    base = base.astype({"hadm_id": "int64"})
    for notes in by_admission.frames():  # every note of an admission is in one part
        part = _admission_events(notes, base, name, relative, quarantine, detail)
        events.append(part, in_range(part["stay_id"].to_numpy()))
    by_admission.remove()
    by_stay = events.close().rewrite(
        lambda part: part.sort_values(["stay_id", "note_index"], kind="stable").reset_index(drop=True), scratch / name)
    return by_stay, dict(detail)


def _admission_events(notes: pd.DataFrame, base: pd.DataFrame, name: str, relative: str, quarantine: Quarantine,
                      detail: Counts) -> pd.DataFrame:
    """The events of these admissions' notes (all of each admission's): repeats quarantined, each
    note's place in its admission, one event per note and ICU stay of the admission."""
    notes = notes.sort_values(["subject_id", "hadm_id", "t", "row"], kind="stable")
    repeated = notes.duplicated(["subject_id", "hadm_id", "t", "text"], keep="first")
    quarantine.add(relative, "duplicate row (same admission, charttime and text)", notes.loc[repeated, "row"])
    notes = notes[~repeated]
    quarantine.count_used(relative, len(notes))
    notes = notes.assign(note_index=notes.groupby(["subject_id", "hadm_id"]).cumcount())
    detail["notes repeating an earlier text of their admission (an event, not repeated in the text)"] += int(
        notes.duplicated(["subject_id", "hadm_id", "text"], keep="first").sum())
    events = base.merge(notes, on=["subject_id", "hadm_id"])
    if MODALITY_BY_NAME[name].after_stay:  # written at hospital discharge: known then, whatever its charttime
        events["t"] = events["t"].where(~(events["dischtime"] > events["t"]), events["dischtime"])
    events["time_hours"] = (events["t"] - events["intime"]) / HOUR
    return events[["stay_id", "time_hours", "note_index", "text"]].astype({"text": "string"})
