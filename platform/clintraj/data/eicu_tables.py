"""Schema of the eICU-CRD v2.0 tables this project reads.

Column names and order are those of the PhysioNet release (flat `*.csv.gz`
files). Each dtype is the pandas dtype a plain `pd.read_csv` infers for that
column of the real demo files ("str" stands for text); pass `Table.dtypes` to
`read_csv` to pin it. Integer columns have no blanks in these tables; float
columns can (weights, heights, `drughiclseqno`, `labresult`).

The vocabularies of these tables (lab names and units, diagnosis and treatment paths,
drug orders, ...) are the synthetic generator's: `data.synthetic.eicu.vocabulary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Table:
    """One eICU table: file stem and `{column: pandas dtype}` in file order."""

    name: str
    dtypes: Mapping[str, str]

    @property
    def file(self) -> str:
        return f"{self.name}.csv.gz"

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.dtypes)

    @property
    def key(self) -> str:
        """The table's own row id (its first column: patientunitstayid, labid, diagnosisid, ...)."""
        return self.columns[0]


def _table(name: str, *columns: tuple[str, str]) -> Table:
    return Table(name, MappingProxyType(dict(columns)))


_INT, _FLOAT, _STR, _BOOL = "int64", "float64", "str", "bool"

PATIENT = _table(
    "patient",
    ("patientunitstayid", _INT),
    ("patienthealthsystemstayid", _INT),
    ("gender", _STR),
    ("age", _STR),  # "0".."89", "> 89", or blank
    ("ethnicity", _STR),
    ("hospitalid", _INT),
    ("wardid", _INT),
    ("apacheadmissiondx", _STR),
    ("admissionheight", _FLOAT),
    ("hospitaladmittime24", _STR),
    ("hospitaladmitoffset", _INT),  # minutes from unit admission, <= 0
    ("hospitaladmitsource", _STR),
    ("hospitaldischargeyear", _INT),
    ("hospitaldischargetime24", _STR),
    ("hospitaldischargeoffset", _INT),
    ("hospitaldischargelocation", _STR),
    ("hospitaldischargestatus", _STR),  # Alive / Expired / blank
    ("unittype", _STR),
    ("unitadmittime24", _STR),
    ("unitadmitsource", _STR),
    ("unitvisitnumber", _INT),
    ("unitstaytype", _STR),
    ("admissionweight", _FLOAT),
    ("dischargeweight", _FLOAT),
    ("unitdischargetime24", _STR),
    ("unitdischargeoffset", _INT),  # unit length of stay in minutes
    ("unitdischargelocation", _STR),
    ("unitdischargestatus", _STR),
    ("uniquepid", _STR),
)

LAB = _table(
    "lab",
    ("labid", _INT),
    ("patientunitstayid", _INT),
    ("labresultoffset", _INT),
    ("labtypeid", _INT),
    ("labname", _STR),
    ("labresult", _FLOAT),
    ("labresulttext", _STR),
    ("labmeasurenamesystem", _STR),
    ("labmeasurenameinterface", _STR),
    ("labresultrevisedoffset", _INT),
)

DIAGNOSIS = _table(
    "diagnosis",
    ("diagnosisid", _INT),
    ("patientunitstayid", _INT),
    ("activeupondischarge", _BOOL),
    ("diagnosisoffset", _INT),
    ("diagnosisstring", _STR),
    ("icd9code", _STR),  # "ICD-9, ICD-10" list, or blank
    ("diagnosispriority", _STR),  # Primary / Major / Other
)

TREATMENT = _table(
    "treatment",
    ("treatmentid", _INT),
    ("patientunitstayid", _INT),
    ("treatmentoffset", _INT),
    ("treatmentstring", _STR),
    ("activeupondischarge", _BOOL),
)

MEDICATION = _table(
    "medication",
    ("medicationid", _INT),
    ("patientunitstayid", _INT),
    ("drugorderoffset", _INT),
    ("drugstartoffset", _INT),
    ("drugivadmixture", _STR),  # Yes / No
    ("drugordercancelled", _STR),  # Yes / No
    ("drugname", _STR),  # often blank in eICU; drughiclseqno then names the drug
    ("drughiclseqno", _FLOAT),
    ("dosage", _STR),
    ("routeadmin", _STR),
    ("frequency", _STR),
    ("loadingdose", _STR),
    ("prn", _STR),  # Yes / No
    ("drugstopoffset", _INT),
    ("gtc", _INT),
)

APS_UNRECORDED = -1
"""apacheApsVar writes -1, never a blank, for a variable that was not recorded."""

APACHE_APS_VARIABLES = (
    "intubated", "vent", "dialysis", "eyes", "motor", "verbal", "meds", "urine", "wbc",
    "temperature", "respiratoryrate", "sodium", "heartrate", "meanbp", "ph", "hematocrit",
    "creatinine", "albumin", "pao2", "pco2", "bun", "glucose", "bilirubin", "fio2",
)  # fmt: skip
"""The APACHE IV physiology (worst value of the first unit day) columns of apacheApsVar."""

_APS_FLOAT_VARIABLES = {
    "urine", "wbc", "temperature", "sodium", "ph", "hematocrit", "creatinine", "albumin",
    "pao2", "pco2", "bun", "bilirubin",
}  # fmt: skip

APACHE_APS_VAR = _table(
    "apacheApsVar",
    ("apacheapsvarid", _INT),
    ("patientunitstayid", _INT),
    *((name, _FLOAT if name in _APS_FLOAT_VARIABLES else _INT) for name in APACHE_APS_VARIABLES),
)

TABLES = (PATIENT, LAB, DIAGNOSIS, TREATMENT, MEDICATION, APACHE_APS_VAR)
"""Every table the synthetic eICU generator writes."""
