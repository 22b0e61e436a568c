"""Schemas of the MIMIC-IV v2.2, MIMIC-CXR-JPG 2.0.0 and MIMIC-IV-Note 2.2 tables we
read or write, and the 17 clinical variables of the mimic3-benchmarks time series.

Column orders are those of the PhysioNet releases (checked against the MIMIC-IV
Clinical Database Demo 2.2 files; `icu/chartevents` against the MIMIC-IV docs).
Item ids and text -> number maps come from YerevaNN/mimic3-benchmarks
(`itemid_to_variable_map.csv`, `discretizer_config.json`, `channel_info.json`,
MIT licence), restricted to the ids that exist in MIMIC-IV: MetaVision
chartevents ids (22xxxx) and hosp/labevents ids (5xxxx). Nothing here reads
those files at runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

# pandas dtypes used in TableSchema.dtypes. DATETIME columns are text in the
# files ("YYYY-MM-DD HH:MM:SS", patients.dod "YYYY-MM-DD") and are parsed.
INT = "Int64"  # nullable: some id columns are blank in some rows
FLOAT = "float64"
STRING = "string"
DATETIME = "datetime64[s]"


@dataclass(frozen=True)
class TableSchema:
    """One table: its path below the dataset root and its columns, in file order."""

    path: str
    dtypes: Mapping[str, str]  # column -> pandas dtype, in file order

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.dtypes)

    @property
    def datetime_columns(self) -> tuple[str, ...]:
        return tuple(c for c, t in self.dtypes.items() if t == DATETIME)

    def read_csv_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `pandas.read_csv` that give every column its dtype."""
        return {
            "dtype": {c: t for c, t in self.dtypes.items() if t != DATETIME},
            "parse_dates": list(self.datetime_columns),
            "keep_default_na": False,
            "na_values": [""],
        }


def _schema(path: str, **dtypes: str) -> TableSchema:
    return TableSchema(path, MappingProxyType(dict(dtypes)))


PATIENTS = _schema(
    "hosp/patients.csv.gz",
    subject_id=INT,
    gender=STRING,
    anchor_age=INT,
    anchor_year=INT,
    anchor_year_group=STRING,
    dod=DATETIME,
)
ADMISSIONS = _schema(
    "hosp/admissions.csv.gz",
    subject_id=INT,
    hadm_id=INT,
    admittime=DATETIME,
    dischtime=DATETIME,
    deathtime=DATETIME,
    admission_type=STRING,
    admit_provider_id=STRING,
    admission_location=STRING,
    discharge_location=STRING,
    insurance=STRING,
    language=STRING,
    marital_status=STRING,
    race=STRING,
    edregtime=DATETIME,
    edouttime=DATETIME,
    hospital_expire_flag=INT,
)
DIAGNOSES_ICD = _schema(
    "hosp/diagnoses_icd.csv.gz",
    subject_id=INT,
    hadm_id=INT,
    seq_num=INT,
    icd_code=STRING,  # no dots, leading zeros kept ('0389')
    icd_version=INT,  # 9 or 10
)
LABEVENTS = _schema(
    "hosp/labevents.csv.gz",
    labevent_id=INT,
    subject_id=INT,
    hadm_id=INT,
    specimen_id=INT,
    itemid=INT,
    order_provider_id=STRING,
    charttime=DATETIME,
    storetime=DATETIME,
    value=STRING,
    valuenum=FLOAT,
    valueuom=STRING,
    ref_range_lower=FLOAT,
    ref_range_upper=FLOAT,
    flag=STRING,
    priority=STRING,
    comments=STRING,
)
ICUSTAYS = _schema(
    "icu/icustays.csv.gz",
    subject_id=INT,
    hadm_id=INT,
    stay_id=INT,
    first_careunit=STRING,
    last_careunit=STRING,
    intime=DATETIME,
    outtime=DATETIME,
    los=FLOAT,  # fractional days
)
CHARTEVENTS = _schema(
    "icu/chartevents.csv.gz",
    subject_id=INT,
    hadm_id=INT,
    stay_id=INT,
    caregiver_id=INT,
    charttime=DATETIME,
    storetime=DATETIME,
    itemid=INT,
    value=STRING,
    valuenum=FLOAT,
    valueuom=STRING,
    warning=INT,
)
CXR_METADATA = _schema(
    "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz",
    dicom_id=STRING,
    subject_id=INT,
    study_id=INT,
    PerformedProcedureStepDescription=STRING,
    ViewPosition=STRING,  # AP, PA, LATERAL, LL
    Rows=INT,
    Columns=INT,
    StudyDate=INT,  # yyyymmdd
    StudyTime=FLOAT,  # hhmmss.fff, leading zeros lost (80556.875 is 08:05:56.875)
    ProcedureCodeSequence_CodeMeaning=STRING,
    ViewCodeSequence_CodeMeaning=STRING,
    PatientOrientationCodeSequence_CodeMeaning=STRING,
)
_NOTE_DTYPES = dict(
    note_id=STRING,  # "<subject_id>-DS-<note_seq>" / "<subject_id>-RR-<note_seq>"
    subject_id=INT,
    hadm_id=INT,
    note_type=STRING,  # DS or RR
    note_seq=INT,
    charttime=DATETIME,
    storetime=DATETIME,
    text=STRING,
)
DISCHARGE = _schema("mimic-iv-note/note/discharge.csv.gz", **_NOTE_DTYPES)
RADIOLOGY = _schema("mimic-iv-note/note/radiology.csv.gz", **_NOTE_DTYPES)

MIMIC_TABLES: tuple[TableSchema, ...] = (
    PATIENTS,
    ADMISSIONS,
    DIAGNOSES_ICD,
    LABEVENTS,
    ICUSTAYS,
    CHARTEVENTS,
    CXR_METADATA,
    DISCHARGE,
    RADIOLOGY,
)


def cxr_image_path(subject_id: int, study_id: int, dicom_id: str) -> str:
    """Path of one MIMIC-CXR-JPG image below `mimic-cxr-jpg/`."""
    return f"files/p{str(subject_id)[:2]}/p{subject_id}/s{study_id}/{dicom_id}.jpg"


# --- The 17 clinical variables (mimic3-benchmarks `discretizer_config.json`) ---

VARIABLES: tuple[str, ...] = (
    "Capillary refill rate",
    "Diastolic blood pressure",
    "Fraction inspired oxygen",
    "Glascow coma scale eye opening",
    "Glascow coma scale motor response",
    "Glascow coma scale total",
    "Glascow coma scale verbal response",
    "Glucose",
    "Heart Rate",
    "Height",
    "Mean blood pressure",
    "Oxygen saturation",
    "Respiratory rate",
    "Systolic blood pressure",
    "Temperature",
    "Weight",
    "pH",
)

# Source: mimic3-benchmarks discretizer_config.json "is_categorical_channel".
CATEGORICAL_VARIABLES: frozenset[str] = frozenset(
    {
        "Capillary refill rate",
        "Glascow coma scale eye opening",
        "Glascow coma scale motor response",
        "Glascow coma scale total",
        "Glascow coma scale verbal response",
    }
)

# Source: mimic3-benchmarks discretizer_config.json "normal_values", verbatim
# (strings; categorical ones are category labels, map them with CATEGORICAL_TEXT_TO_NUMERIC).
NORMAL_VALUES: Mapping[str, str] = MappingProxyType(
    {
        "Capillary refill rate": "0.0",
        "Diastolic blood pressure": "59.0",
        "Fraction inspired oxygen": "0.21",
        "Glascow coma scale eye opening": "4 Spontaneously",
        "Glascow coma scale motor response": "6 Obeys Commands",
        "Glascow coma scale total": "15",
        "Glascow coma scale verbal response": "5 Oriented",
        "Glucose": "128.0",
        "Heart Rate": "86",
        "Height": "170.0",
        "Mean blood pressure": "77.0",
        "Oxygen saturation": "98.0",
        "Respiratory rate": "19",
        "Systolic blood pressure": "118.0",
        "Temperature": "36.6",
        "Weight": "81.0",
        "pH": "7.4",
    }
)

# Source: mimic3-benchmarks channel_info.json "values" (GCS answers of both CareVue,
# "4 Spontaneously", and MetaVision, "Spontaneously"). Note mimic3-benchmarks maps
# eye opening "None" to 0 although MIMIC-IV charts it with valuenum 1.
GCS_TEXT_TO_NUMERIC: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "Glascow coma scale eye opening": MappingProxyType(
            {
                "None": 0,
                "1 No Response": 1,
                "2 To pain": 2,
                "To Pain": 2,
                "3 To speech": 3,
                "To Speech": 3,
                "4 Spontaneously": 4,
                "Spontaneously": 4,
            }
        ),
        "Glascow coma scale motor response": MappingProxyType(
            {
                "1 No Response": 1,
                "No response": 1,
                "2 Abnorm extensn": 2,
                "Abnormal extension": 2,
                "3 Abnorm flexion": 3,
                "Abnormal Flexion": 3,
                "4 Flex-withdraws": 4,
                "Flex-withdraws": 4,
                "5 Localizes Pain": 5,
                "Localizes Pain": 5,
                "6 Obeys Commands": 6,
                "Obeys Commands": 6,
            }
        ),
        "Glascow coma scale verbal response": MappingProxyType(
            {
                "No Response-ETT": 1,
                "No Response": 1,
                "1 No Response": 1,
                "1.0 ET/Trach": 1,
                "2 Incomp sounds": 2,
                "Incomprehensible sounds": 2,
                "3 Inapprop words": 3,
                "Inappropriate Words": 3,
                "4 Confused": 4,
                "Confused": 4,
                "5 Oriented": 5,
                "Oriented": 5,
            }
        ),
        "Glascow coma scale total": MappingProxyType({str(score): score for score in range(3, 16)}),
    }
)

# Raw chartevents text -> 0 (normal) / 1 (delayed). mimic3-benchmarks `clean_crr`
# knows the MIMIC-III spellings; MIMIC-IV MetaVision charts "... Seconds".
CAPILLARY_REFILL_TEXT_TO_NUMERIC: Mapping[str, int] = MappingProxyType(
    {
        "Normal <3 secs": 0,
        "Brisk": 0,
        "Normal <3 Seconds": 0,
        "Abnormal >3 secs": 1,
        "Delayed": 1,
        "Abnormal >3 Seconds": 1,
    }
)

# Every categorical variable's text -> number map, as channel_info.json gives it
# (capillary refill there is already cleaned to "0.0" / "1.0").
CATEGORICAL_TEXT_TO_NUMERIC: Mapping[str, Mapping[str, int]] = MappingProxyType(
    {
        "Capillary refill rate": MappingProxyType({"0.0": 0, "1.0": 1}),
        **GCS_TEXT_TO_NUMERIC,
    }
)

# MIMIC-IV chartevents item ids per variable. Source: mimic3-benchmarks
# itemid_to_variable_map.csv (STATUS "ready", DBSOURCE metavision), all present in
# MIMIC-IV icu/d_items. Exceptions: capillary refill, which that map lists for
# CareVue only, uses MIMIC-IV's "Capillary Refill R"/"L" (223951/224308); GCS total
# has no MIMIC-IV item (MetaVision charts the three components only; sum them).
CHART_ITEMIDS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "Capillary refill rate": (223951, 224308),
        "Diastolic blood pressure": (220051, 225310, 220180, 224643),
        "Fraction inspired oxygen": (223835,),
        "Glascow coma scale eye opening": (220739,),
        "Glascow coma scale motor response": (223901,),
        "Glascow coma scale total": (),
        "Glascow coma scale verbal response": (223900,),
        "Glucose": (225664, 220621, 226537),
        "Heart Rate": (220045,),
        "Height": (226707, 226730),
        "Mean blood pressure": (220052, 225312, 224322, 220181),
        "Oxygen saturation": (220227, 220277),
        "Respiratory rate": (220210, 224689, 224422, 224690),
        "Systolic blood pressure": (220050, 225309, 220179, 224167, 227243),
        "Temperature": (223762, 223761),
        "Weight": (224639, 226512, 226531),
        "pH": (223830, 220274),
    }
)

# MIMIC-IV hosp/labevents item ids per variable. Source: mimic3-benchmarks
# itemid_to_variable_map.csv (LINKSTO labevents, STATUS "ready"); the ids are the
# same in MIMIC-IV d_labitems (51478 is urine glucose, 51491/51094 urine pH).
LAB_ITEMIDS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "Glucose": (50931, 50809, 51478),
        "Oxygen saturation": (50817,),
        "pH": (50820, 51491, 50831, 51094),
    }
)

# Item id -> variable, over chartevents and labevents ids (they do not overlap).
ITEMID_TO_VARIABLE: Mapping[int, str] = MappingProxyType(
    {itemid: var for table in (CHART_ITEMIDS, LAB_ITEMIDS) for var, ids in table.items() for itemid in ids}
)

# Items charted in non-metric units; convert before pooling with the metric items.
FAHRENHEIT_ITEMIDS: frozenset[int] = frozenset({223761})  # Temperature Fahrenheit
POUND_ITEMIDS: frozenset[int] = frozenset({226531})  # Admission Weight (lbs.)
INCH_ITEMIDS: frozenset[int] = frozenset({226707})  # Height (inches)
