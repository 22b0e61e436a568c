"""MIMIC-CXR-JPG of a chunk's stays: studies, their metadata rows and one JPEG per image."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clintraj.data.mimic import tables as mt
from clintraj.data.synthetic.latent import sigmoid
from clintraj.data.synthetic.mimic.chest import ACUTE_DEVICES, ChestFindings
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
_GRID_Y, _GRID_X = np.meshgrid(_AXIS, _AXIS, indexing="ij")  # y down, x to the image's right


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((_GRID_X - cx) / rx) ** 2 + ((_GRID_Y - cy) / ry) ** 2 < 1


def _polyline(points, half_width: float = 0.025) -> np.ndarray:
    """Pixels within `half_width` of the line through `points` ((x, y), ...)."""
    near = np.zeros(_GRID_X.shape, bool)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((_GRID_X - x0) * dx + (_GRID_Y - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        near |= np.hypot(_GRID_X - x0 - t * dx, _GRID_Y - y0 - t * dy) < half_width
    return near


# Where each device lies on a frontal film (the patient's right on the image's left) and how much
# brighter it makes those pixels; the lateral view is drawn the same way (no task reads it).
_DEVICES = {
    "endotracheal_tube": (_polyline([(0.0, -1.0), (0.0, -0.38)], 0.03), 90.0),
    "tracheostomy": (_polyline([(0.0, -0.9), (0.0, -0.65)], 0.05), 90.0),
    "central_line": (_polyline([(-0.35, -1.0), (-0.2, -0.6), (-0.06, -0.25)]), 85.0),
    "enteric_tube": (_polyline([(0.02, -1.0), (0.04, 0.2), (0.25, 0.85)]), 70.0),
    "chest_tube": (_polyline([(0.8, 0.5), (0.45, -0.5)], 0.035), 80.0),
    "pacemaker": (_polyline([(0.5, -0.6), (0.15, -0.2), (0.0, 0.3)])
                  | (np.abs(_GRID_X - 0.5) < 0.09) & (np.abs(_GRID_Y + 0.6) < 0.06), 110.0),
    "sternotomy": (np.any([_ellipse(0.0, y, 0.035, 0.035) for y in (-0.3, -0.15, 0.0, 0.15, 0.3)], axis=0), 120.0),
}


def _gaussian(cx: float, cy: float, width: float) -> np.ndarray:
    return np.exp(-((_GRID_X - cx) ** 2 + (_GRID_Y - cy) ** 2) / (2 * width**2))


_EFFUSION_LEVEL = 0.35  # the fluid's upper edge when the dome is at 0.62
_HILAR_HAZE = 45.0 * (_gaussian(-0.22, 0.0, 0.25) + _gaussian(0.22, 0.0, 0.25))


@functools.cache
def _lungs(lateral: bool, hyperinflated: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """(lung mask, pixels below the diaphragm's dome, its height) of a view; hyperinflated lungs are
    longer."""
    longer = 0.1 * hyperinflated
    if lateral:
        lungs = _ellipse(0.05, -0.05 + longer / 2, 0.55, 0.65 + longer)
    else:
        lungs = (_ellipse(-0.42, -0.05 + longer / 2, 0.3, 0.6 + longer)
                 | _ellipse(0.42, -0.05 + longer / 2, 0.3, 0.6 + longer))
    return lungs, _GRID_Y > 0.62 + longer, 0.62 + longer


_AORTIC_KNOB = _ellipse(0.12, -0.32, 0.09, 0.07) & ~_ellipse(0.12, -0.32, 0.05, 0.035)
_BREASTS = _ellipse(-0.45, 0.5, 0.32, 0.2) | _ellipse(0.45, 0.5, 0.32, 0.2)


def _chest_image(rng: np.random.Generator, view: str, look: dict) -> np.ndarray:
    """A crude chest radiograph of `look` (one image's share of its stay's `ChestFindings`): the
    body's width follows the patient's build; the lungs haze over and grow blobs with the
    opacity, are longer and darker when hyperinflated, white at the bases with effusions, hazy
    around the hila with edema, empty at the right apex with a pneumothorax; the heart shadow
    widens with its grade; devices are bright lines and boxes; a woman's breast shadows overlie
    the lower lungs; a calcified aortic knob; and noise."""
    lateral = view in ("LATERAL", "LL")
    width = float(np.clip(0.9 + 0.06 * look["habitus"], 0.72, 1.0)) * (0.83 if lateral else 1.0)
    body = _ellipse(0, 0.05, width, 1.05)
    lungs, below_dome, dome = _lungs(lateral, bool(look["hyperinflation"]))
    diaphragm = below_dome & body
    image = np.where(body, 100.0 + 8.0 * np.clip(look["habitus"], -2, 2), 15.0)
    image[lungs] = 40.0 - 12.0 * look["hyperinflation"]
    image[diaphragm] = 135.0
    heart_x = -0.25 if lateral else 0.08
    heart = _ellipse(heart_x, 0.35, 0.22 * (1 + 0.15 * np.clip(look["heart"], -1.5, 3)), 0.22) & ~diaphragm
    image[heart] = 165.0
    if look["calcified_aorta"]:
        image[_AORTIC_KNOB] += 60.0
    if not look["male"]:
        image[_BREASTS & body] += 20.0
    severity = sigmoid(look["opacity"] - 0.5)
    shadow = np.full(image.shape, 50.0 * severity)
    for _ in range(rng.poisson(3.0 * severity)):
        cx, cy, spread = rng.uniform(-0.6, 0.6), rng.uniform(-0.1, 0.5), rng.uniform(0.08, 0.2)
        shadow += 60.0 * _gaussian(cx, cy, spread)
    if look["edema"]:
        shadow += _HILAR_HAZE
    if look["effusion"]:
        shadow += 70.0 * (_GRID_Y > _EFFUSION_LEVEL + dome - 0.62)
    image += shadow * lungs
    if look["pneumothorax"]:
        image[lungs & (_GRID_X < -0.3) & (_GRID_Y < -0.2)] = 20.0
    for device, (mask, brightness) in _DEVICES.items():
        if look[device]:
            image[mask] += brightness
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _looks(stays: Stays, findings: ChestFindings, images: pd.DataFrame, noise: np.ndarray) -> list[dict]:
    """Each image's share of its stay's findings: studies far from the ICU stay (`disease` < 1)
    show less of its acute disease and none of its lines and tubes; a patient keeps a pacemaker,
    sternotomy wires, a tracheostomy, build, emphysema and aorta."""
    stay = images["stay"].to_numpy()
    disease = images["disease"].to_numpy()
    acute = disease >= 0.8
    columns = {
        "opacity": disease * findings.opacity[stay] + noise, "heart": disease * findings.heart[stay],
        "edema": findings.edema[stay] & acute, "effusion": findings.effusion[stay] & acute,
        "pneumothorax": findings.pneumothorax[stay] & acute, "hyperinflation": findings.hyperinflation[stay],
        "calcified_aorta": findings.calcified_aorta[stay], "habitus": findings.habitus[stay], "male": stays.male[stay],
        **{d: findings.devices[d][stay] & (acute if d in ACUTE_DEVICES else True) for d in _DEVICES},
    }
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def write_images(stays: Stays, findings: ChestFindings, images: pd.DataFrame, rng: np.random.Generator,
                 root: Path) -> None:
    """One JPEG per metadata row, drawn from its stay's findings (`_looks`)."""
    looks = _looks(stays, findings, images, rng.normal(0, 0.3, len(images)))
    for row, look in zip(images.itertuples(index=False), looks):
        pixels = _chest_image(rng, row.view, look)
        path = root / mt.cxr_image_path(int(stays.subject_id[row.stay]), int(row.study_id), row.dicom_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode="L").save(path, format="JPEG", quality=90)
