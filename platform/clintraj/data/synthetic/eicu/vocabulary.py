"""Vocabularies of the eICU-CRD v2.0 tables the synthetic generator writes.

The vocabularies are real strings of eICU (diagnosis paths with their
ICD-9/ICD-10 codes, treatment paths, drug orders, lab names and units),
grouped by what drives them clinically, for the synthetic generator. The tables'
schema is `data.eicu_tables`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping, NamedTuple


# ----------------------------------------------------------------------------- labs


class LabName(NamedTuple):
    """A lab as eICU names it; `system_unit` is blank where eICU leaves labmeasurenamesystem empty."""

    labtypeid: int  # 1 chemistry, 3 hematology, 4 sundry, 7 blood gas
    system_unit: str
    interface_units: tuple[str, ...]  # spellings of labmeasurenameinterface, most common first


_MMOL = ("mmol/L", "MEQ/L", "mEq/L")
_MGDL = ("mg/dL", "MG/DL", "mg/dl")
_GDL = ("g/dL", "gm/dL", "G/DL")
_KMCL = ("K/uL", "K/MM3", "K/CMM")
_MMHG = ("mmHg", "mm Hg", "mm(hg)")
_UL = ("U/L", "IU/L", "unit/L")

LABS: Mapping[str, LabName] = MappingProxyType(
    {
        "sodium": LabName(1, "mmol/L", _MMOL),
        "potassium": LabName(1, "mmol/L", _MMOL),
        "chloride": LabName(1, "mmol/L", _MMOL),
        "bicarbonate": LabName(1, "mmol/L", _MMOL),
        "anion gap": LabName(1, "", ("mmol/L", "MMOL/L", "mmol/l")),
        "BUN": LabName(1, "mg/dL", _MGDL),
        "creatinine": LabName(1, "mg/dL", _MGDL),
        "glucose": LabName(1, "mg/dL", _MGDL),
        "calcium": LabName(1, "mg/dL", _MGDL),
        "magnesium": LabName(1, "mg/dL", _MGDL),
        "phosphate": LabName(1, "mg/dL", _MGDL),
        "albumin": LabName(1, "g/dL", _GDL),
        "total protein": LabName(1, "g/dL", _GDL),
        "total bilirubin": LabName(1, "mg/dL", _MGDL),
        "AST (SGOT)": LabName(1, "Units/L", _UL),
        "ALT (SGPT)": LabName(1, "Units/L", _UL),
        "alkaline phos.": LabName(1, "Units/L", _UL),
        "lactate": LabName(1, "mmol/L", ("mmol/L", "MMOL/L")),
        "troponin - I": LabName(1, "ng/mL", ("ng/mL", "ng/ml", "NG/ML")),
        "Hgb": LabName(3, "g/dL", _GDL),
        "Hct": LabName(3, "%", ("%",)),
        "WBC x 1000": LabName(3, "K/mcL", _KMCL),
        "platelets x 1000": LabName(3, "K/mcL", _KMCL),
        "MCV": LabName(3, "fL", ("fL", "FL", "fl")),
        "RDW": LabName(3, "%", ("%",)),
        "PT - INR": LabName(3, "ratio", ("ratio",)),
        "PTT": LabName(3, "sec", ("sec", "SEC", "second(s)")),
        "bedside glucose": LabName(4, "mg/dL", _MGDL),
        "BNP": LabName(4, "pg/mL", ("pg/mL", "pg/ml", "PG/ML")),
        "pH": LabName(7, "", ("units", "unit(s)", "Units")),
        "paO2": LabName(7, "mm Hg", _MMHG),
        "paCO2": LabName(7, "mm Hg", _MMHG),
        "HCO3": LabName(7, "mmol/L", _MMOL),
        "Base Excess": LabName(7, "mEq/L", ("mmol/L", "MEQ/L", "mEq/L")),
        "FiO2": LabName(7, "%", ("%",)),
        "O2 Sat (%)": LabName(7, "%", ("%", "% Sat.")),
    }
)
"""labname -> type and units, for the labs the generator draws (the common eICU ones)."""


# ------------------------------------------------------------------------ diagnoses

DIAGNOSES_BY_PHENOTYPE: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {
        "Acute and unspecified renal failure": (
            ("renal|disorder of kidney|acute renal failure", "584.9, N17.9"),
            ("renal|disorder of kidney|acute renal failure|due to sepsis", "584.9, N17.9"),
            ("renal|disorder of kidney|acute renal failure|due to hypovolemia/decreased circulating volume", "584.9, N17.9"),
        ),
        "Acute cerebrovascular disease": (
            ("neurologic|disorders of vasculature|stroke", "436, I67.8"),
            ("neurologic|disorders of vasculature|stroke|ischemic stroke", "434.91, I63.50"),
            ("neurologic|disorders of vasculature|stroke|hemorrhagic stroke", "432.9, I62.9"),
        ),
        "Acute myocardial infarction": (
            ("cardiovascular|chest pain / ASHD|acute coronary syndrome|acute myocardial infarction (no ST elevation)", "410.71, I21.4"),
            ("cardiovascular|chest pain / ASHD|acute coronary syndrome|acute myocardial infarction (with ST elevation)", "410.90, I21.3"),
        ),
        "Cardiac dysrhythmias": (
            ("cardiovascular|arrhythmias|atrial fibrillation", "427.31, I48.0"),
            ("cardiovascular|arrhythmias|atrial fibrillation|with rapid ventricular response", "427.31, I48.0"),
            ("cardiovascular|arrhythmias|ventricular tachycardia", "427.1, I47.2"),
            ("cardiovascular|arrhythmias|atrial flutter", "427.32, I48.1"),
        ),
        "Chronic kidney disease": (
            ("renal|disorder of kidney|chronic kidney disease", "585.9, N18.9"),
            ("renal|disorder of kidney|ESRD (end stage renal disease)", "585.6, N18.6"),
            ("renal|disorder of kidney|chronic kidney disease|Stage 3 (GFR 30-59)", "585.3, N18.3"),
            ("renal|disorder of kidney|chronic renal insufficiency", "585.9, N18.9"),
        ),
        "Chronic obstructive pulmonary disease and bronchiectasis": (
            ("pulmonary|disorders of the airways|COPD", "491.20, J44.9"),
            ("pulmonary|disorders of the airways|acute COPD exacerbation", "491.21, J44.1"),
        ),
        "Complications of surgical procedures or medical care": (
            ("surgery|general surgery postop issues|hemorrhage", "998.11, I97.89"),
            ("infectious diseases|skin, bone and joint infections|wound infection|surgical wound", "998.59"),
            ("infectious diseases|GI infections|intra-abdominal abscess|postoperative intra-abdominal", "567.22, K65.1"),
        ),
        "Conduction disorders": (
            ("cardiovascular|arrhythmias|AV block|complete heart block", "426.0, I44.2"),
            ("cardiovascular|arrhythmias|AV block|second degree|Mobitz type 2", "426.12, I44.1"),
            ("cardiovascular|arrhythmias|AV block|left bundle branch block", "426.3, I44.7"),
        ),
        "Congestive heart failure; nonhypertensive": (
            ("cardiovascular|ventricular disorders|congestive heart failure", "428.0, I50.9"),
            ("cardiovascular|ventricular disorders|acute pulmonary edema", "428.1, I50.1"),
        ),
        "Coronary atherosclerosis and other heart disease": (
            ("cardiovascular|chest pain / ASHD|coronary artery disease|known", "414.00, I25.10"),
            ("cardiovascular|chest pain / ASHD|coronary artery disease", ""),
        ),
        "Diabetes mellitus with complications": (
            ("endocrine|glucose metabolism|DKA", "250.13, E10.1"),
            ("endocrine|glucose metabolism|diabetes mellitus|Type II|uncontrolled", "250.02, E11.65"),
            ("endocrine|glucose metabolism|DKA|with altered mental status", "250.33, E10.11"),
        ),
        "Diabetes mellitus without complication": (
            ("endocrine|glucose metabolism|diabetes mellitus", ""),
            ("endocrine|glucose metabolism|diabetes mellitus|Type II", ""),
            ("endocrine|glucose metabolism|diabetes mellitus|Type II|controlled", "250.00, E11.9"),
        ),
        "Disorders of lipid metabolism": (
            ("cardiovascular|chest pain / ASHD|hyperlipidemia", "272.4, E78.5"),
        ),
        "Essential hypertension": (
            ("cardiovascular|vascular disorders|hypertension", "401.9, I10"),
            ("cardiovascular|ventricular disorders|hypertension", "401.9, I10"),
            ("cardiovascular|vascular disorders|hypertension|controlled", "401.9, I10"),
        ),
        "Fluid and electrolyte disorders": (
            ("renal|electrolyte imbalance|hypokalemia", "276.8, E87.6"),
            ("renal|electrolyte imbalance|hyponatremia", "276.1, E87.0, E87.1"),
            ("renal|disorder of acid base|metabolic acidosis", "276.2, E87.2"),
            ("cardiovascular|shock / hypotension|hypovolemia", "276.52, E86.1"),
            ("renal|electrolyte imbalance|hyperkalemia", "276.7, E87.5"),
        ),
        "Gastrointestinal hemorrhage": (
            ("gastrointestinal|GI bleeding / PUD|GI bleeding", "578.9, K92.2"),
            ("gastrointestinal|GI bleeding / PUD|upper GI bleeding", "578.9, K92.2"),
            ("gastrointestinal|GI bleeding / PUD|lower GI bleeding", "578.9, K92.2"),
        ),
        "Hypertension with complications and secondary hypertension": (
            ("cardiovascular|vascular disorders|hypertension|hypertensive emergency/urgency", "401.0, I10"),
            ("cardiovascular|ventricular disorders|cardiomyopathy|hypertrophic|hypertensive with LVH", "402.91, I11.0"),
        ),
        "Other liver diseases": (
            ("gastrointestinal|hepatic disease|hepatic dysfunction|with cirrhosis", "571.5, K74.60"),
            ("gastrointestinal|hepatic disease|hepatic dysfunction", "573.9, K76.9"),
            ("gastrointestinal|hepatic disease|toxic hepatitis|alcohol related", "571.1, K70.1"),
        ),
        "Other lower respiratory disease": (
            ("pulmonary|disorders of lung parenchyma|interstitial lung disease", "516.9, J84.9"),
            ("pulmonary|respiratory failure|hypoxemia", "799.02, J96.91"),
            ("pulmonary|disorders of the airways|asthma / bronchospasm", "493.90, J45"),
        ),
        "Other upper respiratory disease": (
            ("infectious diseases|head and neck infections|sinusitis", "461.9, J01.90"),
            ("infectious diseases|head and neck infections|epiglottitis", "464.30, J05.10"),
        ),
        "Pleurisy; pneumothorax; pulmonary collapse": (
            ("pulmonary|pleural disorders|pleural effusion", "511.9, J91.8"),
            ("pulmonary|pleural disorders|pneumothorax|spontaneous", "512.8, J93.1"),
            ("pulmonary|disorders of lung parenchyma|atelectasis/collapse", "518.0, J98.11"),
        ),
        "Pneumonia (except that caused by tuberculosis or sexually transmitted disease)": (
            ("pulmonary|pulmonary infections|pneumonia", "486, J18.9"),
            ("pulmonary|pulmonary infections|pneumonia|aspiration", "507.0, J69.0"),
            ("pulmonary|pulmonary infections|pneumonia|community-acquired", "486, J18.9"),
            ("infectious diseases|chest/pulmonary infections|pneumonia", "486, J18.9"),
        ),
        "Respiratory failure; insufficiency; arrest (adult)": (
            ("pulmonary|respiratory failure|acute respiratory failure", "518.81, J96.00"),
            ("pulmonary|respiratory failure|acute respiratory distress", "518.82"),
            ("pulmonary|respiratory failure|ARDS", "518.81, J80"),
        ),
        "Septicemia (except in labor)": (
            ("cardiovascular|shock / hypotension|sepsis", "038.9, A41.9"),
            ("infectious diseases|systemic/other infections|sepsis", "038.9, A41.9"),
            ("cardiovascular|shock / hypotension|sepsis|severe", "995.92, R65.2"),
        ),
        "Shock": (
            ("cardiovascular|shock / hypotension|septic shock", "785.52, R65.21"),
            ("cardiovascular|shock / hypotension|cardiogenic shock", "785.51, R57.0"),
            ("cardiovascular|shock / hypotension|hypotension / pressor dependent", ""),
        ),
    }
)
"""(diagnosisstring, icd9code) choices for each of the 25 benchmark phenotypes (latent.PHENOTYPES)."""

OTHER_DIAGNOSES: tuple[tuple[str, str], ...] = (
    ("neurologic|altered mental status / pain|change in mental status", "780.09, R41.82"),
    ("hematology|bleeding and red blood cell disorders|anemia", ""),
    ("endocrine|glucose metabolism|hyperglycemia", "790.6, R73.9"),
    ("neurologic|altered mental status / pain|pain", ""),
    ("renal|electrolyte imbalance|hypomagnesemia", "275.2, E83.42"),
    ("hematology|platelet disorders|thrombocytopenia", "287.5, D69.6"),
    ("neurologic|altered mental status / pain|anxiety", "300.00, F41.9"),
    ("gastrointestinal|malnutrition|protein-calorie malnutrition", "263.9, E46"),
    ("endocrine|thyroid|hypothyroidism", "244.9, E03.9"),
    ("neurologic|altered mental status / pain|delirium", "293.0, F05"),
    ("toxicology|drug withdrawal|alcohol withdrawal", "291.81, F10.239"),
    ("pulmonary|disorders of the airways|obstructive sleep apnea", "780.57, G47.33"),
    ("neurologic|altered mental status / pain|depression", "311, F32.9"),
    ("gastrointestinal|abdominal/ general|obesity", "278.00, E66.9"),
)
"""Common diagnoses not tied to a benchmark phenotype (background noise)."""

APACHE_ADMISSION_DX: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Septicemia (except in labor)": (
            "Sepsis, pulmonary",
            "Sepsis, renal/UTI (including bladder)",
            "Sepsis, GI",
            "Sepsis, unknown",
        ),
        "Acute myocardial infarction": ("Infarction, acute myocardial (MI)",),
        "Acute cerebrovascular disease": ("CVA, cerebrovascular accident/stroke",),
        "Gastrointestinal hemorrhage": ("Bleeding, upper GI", "Bleeding, lower GI", "Bleeding, GI-location unknown"),
        "Diabetes mellitus with complications": ("Diabetic ketoacidosis",),
        "Shock": (
            "Cardiac arrest (with or without respiratory arrest; for respiratory arrest see Respiratory System)",
            "Shock, cardiogenic",
        ),
        "Respiratory failure; insufficiency; arrest (adult)": ("Respiratory - medical, other",),
        "Pneumonia (except that caused by tuberculosis or sexually transmitted disease)": ("Pneumonia, bacterial",),
        "Congestive heart failure; nonhypertensive": ("CHF, congestive heart failure",),
        "Chronic obstructive pulmonary disease and bronchiectasis": ("Emphysema/bronchitis",),
        "Acute and unspecified renal failure": ("Renal failure, acute",),
        "Cardiac dysrhythmias": ("Rhythm disturbance (atrial, supraventricular)",),
        "Coronary atherosclerosis and other heart disease": (
            "Angina, unstable (angina interferes w/quality of life or meds are tolerated poorly)",
            "CABG alone, coronary artery bypass grafting",
        ),
        "Hypertension with complications and secondary hypertension": (
            "Hypertension, uncontrolled (for cerebrovascular accident-see Neurological System)",
        ),
    }
)
"""apacheadmissiondx for a stay with that phenotype; earlier entries win when a stay has several."""

OTHER_ADMISSION_DX: tuple[str, ...] = (
    "Overdose, sedatives, hypnotics, antipsychotics, benzodiazepines",
    "Overdose, other toxin, poison or drug",
    "Drug withdrawal",
    "GI medical, other",
    "Endarterectomy, carotid",
    "Knee replacement, total (non-traumatic)",
    "GI perforation/rupture, surgery for",
    "Embolus, pulmonary",
    "Coma/change in level of consciousness (for hepatic see GI, for diabetic see Endocrine, if related to cardiac arrest, see CV)",
)
"""apacheadmissiondx of stays without a phenotype listed in APACHE_ADMISSION_DX."""


# --------------------------------------------------------- treatments and medications

THERAPIES = (
    "vasopressor", "ventilation", "oxygen", "dialysis", "antibacterial", "sedation",
    "diuretic", "antiarrhythmic", "insulin", "electrolytes", "routine",
)  # fmt: skip
"""Therapy groups shared by TREATMENTS and MEDICATIONS ("routine" = given to almost everyone)."""

TREATMENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "vasopressor": (
            "cardiovascular|shock|vasopressors|norepinephrine > 0.1 micrograms/kg/min",
            "cardiovascular|shock|vasopressors|norepinephrine <= 0.1 micrograms/kg/min",
            "cardiovascular|shock|vasopressors|phenylephrine (Neosynephrine)",
            "cardiovascular|shock|vasopressors|vasopressin",
            "cardiovascular|shock|vasopressors",
        ),
        "ventilation": (
            "pulmonary|ventilation and oxygenation|mechanical ventilation",
            "pulmonary|radiologic procedures / bronchoscopy|endotracheal tube|insertion",
            "pulmonary|ventilation and oxygenation|ventilator weaning",
            "pulmonary|ventilation and oxygenation|tracheal suctioning",
        ),
        "oxygen": (
            "pulmonary|ventilation and oxygenation|oxygen therapy (< 40%)|nasal cannula",
            "pulmonary|ventilation and oxygenation|oxygen therapy (40% to 60%)",
            "pulmonary|ventilation and oxygenation|non-invasive ventilation",
            "pulmonary|ventilation and oxygenation|oxygen therapy (> 60%)",
        ),
        "dialysis": (
            "renal|dialysis|hemodialysis",
            "renal|dialysis|C V V H",
            "renal|dialysis|hemodialysis|emergent",
            "renal|dialysis|C V V H D",
        ),
        "antibacterial": (
            "infectious diseases|medications|therapeutic antibacterials",
            "infectious diseases|medications|therapeutic antibacterials|vancomycin",
            "infectious diseases|medications|therapeutic antibacterials|penicillins|piperacillin/tazobactam",
            "infectious diseases|medications|therapeutic antibacterials|third generation cephalosporin|ceftriaxone",
            "infectious diseases|cultures / immuno-assays|cultures|blood",
        ),
        "sedation": (
            "neurologic|pain / agitation / altered mentation|sedative agent|propofol",
            "neurologic|pain / agitation / altered mentation|sedative agent|lorazepam",
            "neurologic|pain / agitation / altered mentation|sedative agent|dexmedetomidine",
            "neurologic|pain / agitation / altered mentation|analgesics|narcotic analgesic",
        ),
        "diuretic": ("cardiovascular|ventricular dysfunction|intravenous diuretic|IV furosemide",),
        "antiarrhythmic": (
            "cardiovascular|arrhythmias|antiarrhythmics|class III antiarrhythmic|amiodarone",
            "cardiovascular|arrhythmias|antiarrhythmics|class IV antiarrhythmic|diltiazem",
            "cardiovascular|hypertension|beta blocker|metoprolol",
        ),
        "insulin": (
            "endocrine|glucose metabolism|insulin|sliding scale administration",
            "endocrine|glucose metabolism|insulin|continuous infusion",
            "endocrine|glucose metabolism|insulin",
        ),
        "electrolytes": (
            "renal|electrolyte correction|electrolyte administration|potassium",
            "renal|electrolyte correction|electrolyte administration|magnesium",
            "renal|medications|bicarbonate|sodium bicarbonate",
        ),
        "routine": (
            "pulmonary|radiologic procedures / bronchoscopy|chest x-ray",
            "cardiovascular|intravenous fluid|normal saline administration",
            "gastrointestinal|medications|stress ulcer prophylaxis|pantoprazole",
            "gastrointestinal|medications|antiemetic|serotonin antagonist|ondansetron",
            "cardiovascular|vascular disorders|VTE prophylaxis|compression stockings",
            "cardiovascular|vascular disorders|VTE prophylaxis|low molecular weight heparin|enoxaparin",
            "cardiovascular|consultations|Cardiology consultation",
            "renal|urinary catheters|foley catheter",
        ),
    }
)
"""treatmentstring choices per therapy group."""


class Drug(NamedTuple):
    """One medication order as eICU writes it (blank strings stay blank)."""

    drugname: str
    drughiclseqno: int
    dosage: str
    routeadmin: str
    frequency: str
    gtc: int


MEDICATIONS: Mapping[str, tuple[Drug, ...]] = MappingProxyType(
    {
        "vasopressor": (
            Drug("NOREPINEPHRINE 8 MG in 250mL NS", 36346, "8 mg", "IVPB", "", 32),
            Drug("PRMX NOREPInephrine 4 mg/250 mL NS Drip", 36346, "4 mg", "IV", "", 32),
            Drug("VASOPRESSIN 60 UNITS in 100 mL NS", 2839, "60 unit(s)", "IVPB", "", 68),
            Drug("PHENYLEPHRINE HCL 10 MG/ML IJ SOLN", 2087, "4 mL", "CENTRAL IV", "CONTINUOUS", 41),
        ),
        "ventilation": (
            Drug("FENTANYL CITRATE", 25386, "100 MCG", ".ROUTE", ".STK-MED", 0),
            Drug("MIDAZOLAM HCL", 1619, "2 MG", ".ROUTE", ".STK-MED", 0),
            Drug("ROCURONIUM BROMIDE", 8963, "50 MG", "IV", ".STK-MED", 32),
        ),
        "oxygen": (
            Drug("IPRATROPIUM-ALBUTEROL 0.5 MG-3 MG(2.5 MG BASE)/3 ML NEB SOLUTION 3 ML VIAL", 9040, "3 mL", "NEBULIZATION", "", 14),
            Drug("albuterol-ipratropium 3-0.5mg", 9040, "PYXIS", "MISC", "Pyxis", 0),
            Drug("SOLU-MEDROL", 2876, "125 mg", "IV", "ONCE X1", 68),
        ),
        "dialysis": (
            Drug("sodium bicarbonate", 523, "50 mEq", "IV", "Once", 59),
            Drug("HEPARIN 25,000 unit(s) in D5W 25", 2808, "25,000 unit(s)", "IV", "", 36),
            Drug("CALCIUM GLUCONATE 1 GRAM/D5W 50ML", 585, "1 Gm", "IVPB", "1XONLY", 59),
        ),
        "antibacterial": (
            Drug("vancomycin", 4042, "PYXIS", "MISC", "Pyxis", 99),
            Drug("ZOSYN 3.375 GRAM in NS 100 mL IVPB", 8738, "3.375 Gm", "IVPB", "Q8H", 19),
            Drug("cefTRIAXone 1 GRAM in NS 50 mL IVPB", 3996, "1 Gm", "IVPB", "Q24H", 19),
            Drug("LEVOFLOXACIN 750 mg in D5W 150mL", 12383, "750 mg", "IV", "Q24H", 19),
            Drug("MEROPENEM 1 G IV SOLR", 11254, "1 g", "IVPB", "Q8H", 19),
        ),
        "sedation": (
            Drug("PROPOFOL 10 MG/1 ML 100ML SDV INJ", 4842, "1,000 mg", "IV", "", 5),
            Drug("DEXMEDETOMIDINE 200 MCG in 50 mL NS", 20971, "200 mcg", "IV", "H72", 83),
            Drug("LORazepam 2 MG/1 ML 1 ML SYR", 4846, "1 mg", "IV Push", "Q1H", 83),
            Drug("fentaNYL", 25386, "50 mcg", "IV", "Once", 2),
        ),
        "diuretic": (
            Drug("LASIX", 3660, "40 mg", "IV", "ONCE X1", 56),
            Drug("FUROSEMIDE 10 MG/1 ML 2ML SDV INJ", 3660, "20 mg", "IV Push", "1XONLY", 56),
        ),
        "antiarrhythmic": (
            Drug("AMIODARONE 900 MG in 500 mL D5W", 83, "900 mg", "IVPB", "", 38),
            Drug("diltiazem", 182, "PYXIS", "MISC", "Pyxis", 99),
            Drug("METOPROLOL TARTRATE 25 MG TAB", 2102, "12.5 mg", "PO", "BID", 41),
            Drug("ASPIRIN 81 MG PO CHEW", 1820, "81 MG", "Oral", "Daily", 2),
        ),
        "insulin": (
            Drug("INSULIN-LISPRO (rDNA) *UNIT* INJ", 11528, "", "SubQ", "QIDACHS", 71),
            Drug("INSULIN (REGULAR) 100 UNITS in 1", 768, "100 unit(s)", "IV", "", 71),
            Drug("ASPART insulin", 20769, "PYXIS", "MISC", "Pyxis", 0),
        ),
        "electrolytes": (
            Drug("potassium chloride", 549, "40 mEq", "PO", "Once", 59),
            Drug("MAGNESIUM SULFATE 2 GM/50 ML IVPB", 610, "2 Gm", "IVPB", "1XONLY", 59),
            Drug("100 ML  -  POTASSIUM CHLORIDE 20 MEQ/100ML IV SOLN", 549, "20 7", "IV", "Q4H PRN", 59),
        ),
        "routine": (
            Drug("acetaMINOPHEN 325 MG TAB", 1866, "650 mg", "PO", "Q4H", 2),
            Drug("ONDANSETRON 2 MG/1 ML 2ML SDV INJ", 33598, "4 mg", "IV Push", "Q6H", 65),
            Drug("SODIUM CHLORIDE 0.9% 1000 ML LVP", 8255, "1,000 mL", "IV", "", 59),
            Drug("PANTOPRAZOLE SODIUM 40 MG IV SOLR", 22008, "40 MG", "IV", "QAM AC", 65),
            Drug("ENOXAPARIN 40 MG/0.4 ML SYR", 7878, "40 mg", "SubQ", "Q24H", 36),
            Drug("DOCUSATE SODIUM 100 MG CAP", 1326, "100 mg", "PO", "BID", 65),
            Drug("1 ML  -  HYDROMORPHONE HCL 1 MG/ML IJ SOLN", 1695, "0.2 3", "IV", "Q5 Min PRN", 2),
        ),
    }
)
"""Medication orders per therapy group."""


# --------------------------------------------------------------- patient vocabularies

GENDERS = ("Male", "Female")
ETHNICITIES = ("Caucasian", "African American", "Hispanic", "Other/Unknown", "Asian", "Native American")
UNIT_TYPES = ("Med-Surg ICU", "MICU", "SICU", "Neuro ICU", "Cardiac ICU", "CCU-CTICU", "CSICU", "CTICU")
CARDIAC_UNIT_TYPES = ("Cardiac ICU", "CCU-CTICU", "CSICU", "CTICU")
HOSPITAL_ADMIT_SOURCES = (
    "Emergency Department", "Floor", "Operating Room", "Direct Admit", "Recovery Room",
    "Acute Care/Floor", "Step-Down Unit (SDU)", "Other Hospital", "PACU",
)  # fmt: skip
UNIT_READMIT_SOURCES = ("ICU to SDU", "Step-Down Unit (SDU)", "Floor", "ICU", "Other ICU")
HOSPITAL_DISCHARGE_LOCATIONS = (
    "Home", "Skilled Nursing Facility", "Other Hospital", "Other External", "Other",
    "Rehabilitation", "Nursing Home",
)  # fmt: skip
UNIT_DISCHARGE_LOCATIONS = (
    "Floor", "Home", "Step-Down Unit (SDU)", "Acute Care/Floor", "Telemetry", "Other Hospital",
    "Other ICU", "Skilled Nursing Facility",
)  # fmt: skip
DEATH = "Death"
"""hospitaldischargelocation / unitdischargelocation of a patient who died there."""
