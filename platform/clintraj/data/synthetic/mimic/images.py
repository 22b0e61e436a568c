"""MIMIC-CXR-JPG of a chunk's stays: studies, their metadata rows and one JPEG per image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clintraj.data.mimic import tables as mt
from clintraj.data.synthetic.latent import CARDIAC, sigmoid
from clintraj.data.synthetic.mimic.helpers import DAY, HOUR
from clintraj.data.synthetic.mimic.stays import Stays

IMAGE_SIZE = 64  # pixels, square grayscale JPEGs
_MAX_STUDIES_PER_STAY = 8  # study_id = 50000000 + 8 * stay index + study number
PORTABLE_AP = "CHEST (PORTABLE AP)"
PA_AND_LAT = "CHEST (PA AND LAT)"
_VIEW_MEANING = {"AP": "antero-posterior", "PA": "postero-anterior", "LATERAL": "lateral", "LL": "left lateral"}


def cxr_studies(stays: Stays, rng: np.random.Generator) -> pd.DataFrame:
    """One row per image. Portable AP studies strictly inside the ICU stay only where
    the stay has the CXR modality; every stay may also have AP studies in the ED
    before or on the ward after the stay, and PA + lateral studies inside it or far
    from it (outpatient), which a cohort filter must drop."""
    n, ms = stays.n, 1000
    los_ms = (stays.outtime - stays.intime) * ms
    inside = stays.present["cxr"] * (1 + np.minimum(rng.poisson(0.25 * stays.los_hours / 24), 3))
    parts = []
    for k in range(int(inside.max(initial=0))):
        stay = np.flatnonzero(inside > k)
        t = stays.intime[stay] * ms + (rng.uniform(0.02, 0.98, len(stay)) * los_ms[stay]).astype(np.int64)
        parts.append(("AP", stay, t, 1.0))
    ed = np.flatnonzero(rng.random(n) < 0.35)
    parts.append(("AP", ed, (stays.intime[ed] - rng.uniform(0.5, 12, len(ed)) * HOUR).astype(np.int64) * ms, 0.8))
    ward = np.flatnonzero((rng.random(n) < 0.15) & (stays.dischtime - stays.outtime > 2 * HOUR))
    after = stays.outtime[ward] + rng.uniform(0.05, 0.95, len(ward)) * (stays.dischtime[ward] - stays.outtime[ward])
    parts.append(("AP", ward, after.astype(np.int64) * ms, 0.6))
    in_stay_pa = np.flatnonzero(rng.random(n) < 0.05)
    t = stays.intime[in_stay_pa] * ms + (rng.uniform(0.02, 0.98, len(in_stay_pa)) * los_ms[in_stay_pa]).astype(np.int64)
    parts.append(("PA", in_stay_pa, t, 1.0))
    clinic = np.flatnonzero(rng.random(n) < 0.25)
    before = (rng.random(len(clinic)) < 0.6) | stays.died[clinic]
    shift = (rng.uniform(20, 400, len(clinic)) * DAY).astype(np.int64)
    t = np.where(before, stays.admittime[clinic] - shift, stays.dischtime[clinic] + shift) * ms
    parts.append(("PA", clinic, t + rng.integers(0, DAY * ms // 2, len(clinic)), 0.3))
    return _study_images(stays, rng, parts)


def _study_images(stays, rng, parts) -> pd.DataFrame:
    """Expand studies to images (a PA study also has a lateral), give them ids."""
    frames = []
    for view, stay, t_ms, disease in parts:
        frames.append(pd.DataFrame({"stay": stay, "t_ms": t_ms, "kind": view, "disease": disease}))
    studies = pd.concat(frames, ignore_index=True).sort_values(["stay", "t_ms"], kind="stable").reset_index(drop=True)
    studies["study_no"] = studies.groupby("stay").cumcount()
    studies = studies[studies["study_no"] < _MAX_STUDIES_PER_STAY]
    stay = studies["stay"].to_numpy()
    studies["study_id"] = 50_000_000 + stays.index[stay].astype(np.int64) * _MAX_STUDIES_PER_STAY + studies["study_no"]
    frontal = studies.assign(view=studies["kind"])
    pa = studies[studies["kind"] == "PA"]
    lateral = pa.assign(view=np.where(rng.random(len(pa)) < 0.8, "LATERAL", "LL"))
    images = pd.concat([frontal, lateral]).sort_values(["stay", "t_ms", "view"], kind="stable").reset_index(drop=True)
    words = rng.integers(0, 1 << 32, (len(images), 5), dtype=np.uint64)
    images["dicom_id"] = ["-".join(f"{w:08x}" for w in row) for row in words]
    recumbent = (images["view"].to_numpy() == "AP") & (rng.random(len(images)) < 0.7)
    images["orientation"] = np.where(recumbent, "Recumbent", "Erect")
    return images.drop(columns=["study_no"])


def cxr_metadata_table(stays: Stays, images: pd.DataFrame) -> pd.DataFrame:
    stay = images["stay"].to_numpy()
    view = images["view"].to_numpy()
    when = pd.DatetimeIndex(images["t_ms"].to_numpy().astype("datetime64[ms]"))
    # hhmmss.fff from exact integers, so the float prints as 143512.234
    hhmmss_ms = (when.hour * 10_000 + when.minute * 100 + when.second) * 1000 + when.microsecond // 1000
    procedure = np.where(images["kind"].to_numpy() == "AP", PORTABLE_AP, PA_AND_LAT)
    return pd.DataFrame(
        {
            "dicom_id": images["dicom_id"].to_numpy(),
            "subject_id": stays.subject_id[stay],
            "study_id": images["study_id"].to_numpy(),
            "PerformedProcedureStepDescription": procedure,
            "ViewPosition": view,
            "Rows": IMAGE_SIZE,
            "Columns": IMAGE_SIZE,
            "StudyDate": (when.year * 10_000 + when.month * 100 + when.day).to_numpy(),
            "StudyTime": np.asarray(hhmmss_ms, dtype=float) / 1000,
            "ProcedureCodeSequence_CodeMeaning": procedure,
            "ViewCodeSequence_CodeMeaning": [_VIEW_MEANING[v] for v in view],
            "PatientOrientationCodeSequence_CodeMeaning": images["orientation"].to_numpy(),
        }
    )


_AXIS = np.linspace(-1, 1, IMAGE_SIZE)
_GRID_Y, _GRID_X = np.meshgrid(_AXIS, _AXIS, indexing="ij")


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((_GRID_X - cx) / rx) ** 2 + ((_GRID_Y - cy) / ry) ** 2 < 1


@dataclass(frozen=True)
class _ChestView:
    """What does not change between images of one view: body, lungs, diaphragm."""

    background: np.ndarray
    lungs: np.ndarray  # 0/1 float mask
    diaphragm: np.ndarray
    heart_x: float

    @classmethod
    def build(cls, body: np.ndarray, lungs: np.ndarray, heart_x: float) -> "_ChestView":
        diaphragm = (_GRID_Y > 0.62) & body
        background = np.where(body, 100.0, 15.0)
        background[lungs] = 40.0
        background[diaphragm] = 135.0
        return cls(background, lungs.astype(float), diaphragm, heart_x)


_FRONTAL = _ChestView.build(
    _ellipse(0, 0.05, 0.9, 1.05), _ellipse(-0.42, -0.05, 0.3, 0.6) | _ellipse(0.42, -0.05, 0.3, 0.6), heart_x=0.08
)
_LATERAL = _ChestView.build(_ellipse(0, 0.05, 0.75, 1.05), _ellipse(0.05, -0.05, 0.55, 0.65), heart_x=-0.25)


def _chest_image(rng: np.random.Generator, view: str, opacity: float, cardiac: float) -> np.ndarray:
    """A crude chest radiograph: dark lungs that haze over and grow blobs with
    `opacity`, a heart shadow that widens with `cardiac`, and noise."""
    chest = _LATERAL if view in ("LATERAL", "LL") else _FRONTAL
    heart = _ellipse(chest.heart_x, 0.35, 0.22 * (1 + 0.15 * np.clip(cardiac, -1.5, 3)), 0.22) & ~chest.diaphragm
    image = np.where(heart, 165.0, chest.background)
    severity = sigmoid(opacity - 0.5)
    shadow = np.full(image.shape, 50.0 * severity)
    for _ in range(rng.poisson(3.0 * severity)):
        cx, cy, width = rng.uniform(-0.6, 0.6), rng.uniform(-0.1, 0.5), rng.uniform(0.08, 0.2)
        rows, columns = np.exp(-((_AXIS - cy) ** 2) / (2 * width**2)), np.exp(-((_AXIS - cx) ** 2) / (2 * width**2))
        shadow += 60.0 * np.outer(rows, columns)
    image += shadow * chest.lungs + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_images(stays: Stays, images: pd.DataFrame, rng: np.random.Generator, root: Path) -> None:
    """One JPEG per metadata row; studies far from the stay reflect less of its state."""
    opacity = stays.opacity
    cardiac = stays.latent[:, CARDIAC]
    noise = rng.normal(0, 0.3, len(images))
    for row, extra in zip(images.itertuples(index=False), noise):
        stay = row.stay
        pixels = _chest_image(rng, row.view, row.disease * opacity[stay] + extra, row.disease * cardiac[stay])
        path = root / mt.cxr_image_path(int(stays.subject_id[stay]), int(row.study_id), row.dicom_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(path, format="JPEG", quality=90)
