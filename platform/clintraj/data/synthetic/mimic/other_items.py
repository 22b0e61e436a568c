"""icu/chartevents rows of MIMIC-IV items outside the 17 variables, for the real table's density.

MIMIC-IV v2.2 charts about 314 M rows for 73 k ICU stays (~4,300 a stay); the 17
variables are a few percent of them. The rest (monitor alarm limits, heart rhythm,
nursing scales, serum chemistry charted by the nurses, ventilator settings for
ventilated stays) is what a reader of chartevents must decompress, parse and filter.
Values are plausible but carry no signal: nothing downstream reads these items.

Written as Arrow tables of about `BATCH_ROWS` rows (vectorised numpy, rendered by
pyarrow's CSV writer), so tens of millions of rows take a minute or two and memory
stays flat. Input/output volumes are not here: MIMIC-IV keeps them in inputevents and
outputevents, not chartevents.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clintraj.data.synthetic.mimic.helpers import floor_minute
from clintraj.data.synthetic.mimic.stays import Stays

BATCH_ROWS = 1_000_000

# (itemid, label, unit, mean, sd, decimals, weight): numeric items, clipped at zero.
# `weight`: relative frequency among the stay's other rows.
NUMERIC_ITEMS = (
    (220046, "Heart rate Alarm - High", "bpm", 120, 8, 0, 6),
    (220047, "Heart Rate Alarm - Low", "bpm", 50, 5, 0, 6),
    (223769, "O2 Saturation Pulseoxymetry Alarm - High", "%", 100, 0.5, 0, 5),
    (223770, "O2 Saturation Pulseoxymetry Alarm - Low", "%", 90, 2, 0, 5),
    (224161, "Resp Alarm - High", "insp/min", 35, 4, 0, 5),
    (224162, "Resp Alarm - Low", "insp/min", 8, 1.5, 0, 5),
    (223751, "Non-Invasive Blood Pressure Alarm - High", "mmHg", 160, 10, 0, 4),
    (223752, "Non-Invasive Blood Pressure Alarm - Low", "mmHg", 90, 8, 0, 4),
    (220074, "Central Venous Pressure", "mmHg", 10, 4, 0, 2),
    (220645, "Sodium (serum)", "mEq/L", 139, 4, 0, 1),
    (227442, "Potassium (serum)", "mEq/L", 4.1, 0.5, 1, 1),
    (220602, "Chloride (serum)", "mEq/L", 103, 5, 0, 1),
    (227443, "HCO3 (serum)", "mEq/L", 24, 4, 0, 1),
    (225624, "BUN", "mg/dL", 25, 15, 0, 1),
    (220615, "Creatinine (serum)", "mg/dL", 1.2, 0.8, 1, 1),
    (220228, "Hemoglobin", "g/dl", 10, 2, 1, 1),
    (220545, "Hematocrit (serum)", "%", 31, 6, 1, 1),
    (220546, "WBC", "K/uL", 11, 5, 1, 1),
    (227457, "Platelet Count", "K/uL", 200, 80, 0, 1),
)

# (itemid, label, answers, weight): text items (valuenum blank, no unit).
TEXT_ITEMS = (
    (220048, "Heart Rhythm", ("SR (Sinus Rhythm)", "ST (Sinus Tachycardia)", "AF (Atrial Fibrillation)",
                              "SB (Sinus Bradycardia)"), 6),
    (224650, "Ectopy Type 1", ("None", "PVC's", "PAC's"), 3),
    (224641, "Alarms On", ("Yes",), 4),
    (224168, "Parameters Checked", ("Yes",), 4),
    (226732, "O2 Delivery Device(s)", ("None", "Nasal cannula", "Face tent", "Non-rebreather"), 3),
    (228096, "Richmond-RAS Scale", ("0  Alert and calm", "-1 Awake - eyes open to voice", "-2 Light sedation",
                                    "-3 Moderate sedation"), 2),
    (224054, "Braden Sensory Perception", ("No Impairment", "Slightly Limited", "Very Limited"), 1),
    (224055, "Braden Moisture", ("Rarely Moist", "Occasionally Moist", "Moist"), 1),
    (224056, "Braden Activity", ("Bedfast", "Chairfast", "Walks Occasionally"), 1),
    (224057, "Braden Mobility", ("Very Limited", "Slightly Limited", "No Limitations"), 1),
    (224058, "Braden Nutrition", ("Probably Inadequate", "Adequate", "Excellent"), 1),
    (224059, "Braden Friction/Shear", ("Potential Problem", "Problem", "No Apparent Problem"), 1),
)

# Ventilator settings and readings: rows of ventilated stays only, `VENTILATOR_SHARE` of them.
VENTILATOR_NUMERIC = (
    (220339, "PEEP set", "cmH2O", 5, 2, 0, 4),
    (224685, "Tidal Volume (observed)", "mL", 450, 80, 0, 3),
    (224684, "Tidal Volume (set)", "mL", 450, 50, 0, 2),
    (224688, "Respiratory Rate (Set)", "insp/min", 16, 4, 0, 3),
    (224695, "Peak Insp. Pressure", "cmH2O", 22, 6, 0, 2),
    (224696, "Plateau Pressure", "cmH2O", 18, 4, 0, 1),
    (224697, "Mean Airway Pressure", "cmH2O", 10, 3, 0, 2),
    (224687, "Minute Volume", "L/min", 8, 2, 1, 2),
)
VENTILATOR_TEXT = (
    (223849, "Ventilator Mode", ("CMV/ASSIST/AutoFlow", "CPAP/PSV", "CMV/ASSIST", "SIMV/PSV/AutoFlow"), 2),
    (223848, "Ventilator Type", ("Drager", "Hamilton"), 1),
)
VENTILATOR_SHARE = 0.25

ITEMIDS = tuple(i[0] for i in NUMERIC_ITEMS + TEXT_ITEMS + VENTILATOR_NUMERIC + VENTILATOR_TEXT)


class _Items:
    """Every item as flat arrays (general items first, then the ventilator's)."""

    def __init__(self, numeric, text, ventilator_numeric, ventilator_text):
        items = numeric + text + ventilator_numeric + ventilator_text
        is_numeric = [True] * len(numeric) + [False] * len(text)
        is_numeric += [True] * len(ventilator_numeric) + [False] * len(ventilator_text)
        self.n_general = len(numeric) + len(text)
        self.itemid = np.array([i[0] for i in items], dtype=np.int64)
        self.numeric = np.array(is_numeric)
        weights = np.array([i[-1] for i in items], dtype=float)
        self.p_general = weights[:self.n_general] / weights[:self.n_general].sum()
        self.p_ventilator = weights[self.n_general:] / weights[self.n_general:].sum()
        numbers = [i if n else (None, None, "", 0.0, 0.0, 0, None) for i, n in zip(items, is_numeric)]
        self.unit = pa.array([i[2] for i in numbers])
        self.mean = np.array([i[3] for i in numbers], dtype=float)
        self.sd = np.array([i[4] for i in numbers], dtype=float)
        self.scale = 10.0 ** np.array([i[5] for i in numbers])
        answers = [() if n else i[2] for i, n in zip(items, is_numeric)]
        self.n_answers = np.array([max(len(a), 1) for a in answers])
        self.first_answer = np.r_[0, np.cumsum([len(a) for a in answers])[:-1]]
        self.answers = pa.array([a for group in answers for a in group])

    def draw(self, rng: np.random.Generator, ventilator: np.ndarray) -> np.ndarray:
        """An item per row: a ventilator item where `ventilator`, else a general one."""
        k = np.empty(len(ventilator), dtype=np.int64)
        k[~ventilator] = rng.choice(self.n_general, size=int((~ventilator).sum()), p=self.p_general)
        k[ventilator] = self.n_general + rng.choice(len(self.p_ventilator), size=int(ventilator.sum()),
                                                    p=self.p_ventilator)
        return k

    def values(self, rng: np.random.Generator, k: np.ndarray) -> tuple[pa.Array, pa.Array]:
        """(value text, valuenum) of items `k`: a number (valuenum, and as text) or an answer."""
        numeric = self.numeric[k]
        number = np.maximum(self.mean[k] + self.sd[k] * rng.standard_normal(len(k)), 0)
        valuenum = pa.array(np.round(number * self.scale[k]) / self.scale[k], mask=~numeric)
        answer = self.first_answer[k] + (rng.random(len(k)) * self.n_answers[k]).astype(np.int64)
        text = self.answers.take(pa.array(np.where(numeric, 0, answer)))
        return pc.if_else(pa.array(numeric), valuenum.cast(pa.string()), text), valuenum


_ITEMS = _Items(NUMERIC_ITEMS, TEXT_ITEMS, VENTILATOR_NUMERIC, VENTILATOR_TEXT)


def rows_per_stay(stays: Stays, rng: np.random.Generator, chart_rows_per_stay: int, rows_written: int) -> np.ndarray:
    """Other-item rows per stay of the chunk: enough for `chart_rows_per_stay` chart rows on average
    over the stays with the time-series modality (`rows_written`: the chunk's rows of the 17
    variables), shared out in proportion to the length of stay."""
    has = stays.present["time_series"]
    counts = np.zeros(stays.n, dtype=np.int64)
    total = chart_rows_per_stay * int(has.sum()) - rows_written
    if total > 0:
        los = stays.los_hours[has]
        counts[has] = rng.multinomial(total, los / los.sum())
    return counts


def other_item_batches(stays: Stays, counts: np.ndarray, rng: np.random.Generator,
                       columns: list[str]) -> Iterator[pa.Table]:
    """Chartevents rows of other items, `counts[i]` for stay i, in tables of about
    `BATCH_ROWS` rows with `columns` (chartevents' columns), each stay's rows in time order."""
    bounds = np.searchsorted(np.cumsum(counts), np.arange(BATCH_ROWS, counts.sum(), BATCH_ROWS), side="right")
    for first, last in zip(np.r_[0, bounds], np.r_[bounds, stays.n]):
        if counts[first:last].sum():
            yield _rows(stays, np.arange(first, last), counts[first:last], rng).select(columns)


def _rows(stays: Stays, which: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> pa.Table:
    stay = np.repeat(which, counts)
    n = len(stay)
    fraction = np.sort(stay + rng.random(n)) - stay  # uniform in [0, 1), increasing within a stay
    t = stays.intime[stay] + (fraction * (stays.outtime[stay] - stays.intime[stay])).astype(np.int64)
    up = -floor_minute(-t)  # minute resolution, inside [intime, outtime]
    t = np.where(up <= stays.outtime[stay], up, floor_minute(t))
    k = _ITEMS.draw(rng, stays.ventilated[stay] & (rng.random(n) < VENTILATOR_SHARE))
    value, valuenum = _ITEMS.values(rng, k)
    return pa.table({
        "subject_id": stays.subject_id[stay],
        "hadm_id": stays.hadm_id[stay],
        "stay_id": stays.stay_id[stay],
        "caregiver_id": rng.integers(10_000, 100_000, n),
        "charttime": pa.array(t).cast(pa.timestamp("s")),
        "storetime": pa.array(t + floor_minute(rng.exponential(20 * 60, n))).cast(pa.timestamp("s")),
        "itemid": _ITEMS.itemid[k],
        "value": value,
        "valuenum": valuenum,
        "valueuom": _ITEMS.unit.take(pa.array(k)),
        "warning": np.zeros(n, dtype=np.int64),
    })
