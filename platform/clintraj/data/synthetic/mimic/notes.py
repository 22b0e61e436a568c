"""MIMIC-IV-Note of a chunk's stays: discharge summaries and radiology reports whose
findings follow the stay's latent state, and the planted leak (`leak=True`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clintraj.data.synthetic.latent import CARDIAC, INFECTION, PHENOTYPES, RESPIRATORY, SEVERITY
from clintraj.data.synthetic.mimic.helpers import DAY, HOUR, ceil_minute, floor_minute, fmt_datetime
from clintraj.data.synthetic.mimic.images import PA_AND_LAT, PORTABLE_AP
from clintraj.data.synthetic.mimic.signals import SIGNALS
from clintraj.data.synthetic.mimic.stays import Stays

LEAK_AFTER_HOURS = 48  # the planted leak (`leak=True`) lies after MIMIC-IV mortality's prediction time
LEAK_TEXTS = ("label marker: the patient is recovering", "label marker: the patient expired")

# Acute problems: (phenotype, discharge diagnosis, hospital course paragraph).
_ACUTE_PROBLEMS = (
    ("Septicemia (except in labor)", "Sepsis",
     "# Sepsis: Presented febrile and tachycardic with leukocytosis, meeting SIRS criteria. Blood cultures "
     "were drawn and broad-spectrum antibiotics (vancomycin and cefepime) were started."),
    ("Pneumonia (except that caused by tuberculosis or sexually transmitted disease)", "Pneumonia",
     "# Pneumonia: Chest imaging showed a new consolidation. Treated with ceftriaxone and azithromycin "
     "with improvement of oxygen requirement."),
    ("Respiratory failure; insufficiency; arrest (adult)", "Acute hypoxemic respiratory failure",
     "# Acute hypoxemic respiratory failure: Required intubation and mechanical ventilation in the ICU."),
    ("Congestive heart failure; nonhypertensive", "Acute on chronic systolic heart failure",
     "# Acute decompensated heart failure: Volume overloaded with elevated JVP and bilateral edema; "
     "diuresed with IV furosemide."),
    ("Shock", "Septic shock",
     "# Shock: Hypotensive despite fluid resuscitation, requiring norepinephrine via central line."),
    ("Acute and unspecified renal failure", "Acute kidney injury",
     "# ___: Creatinine rose above baseline, likely prerenal in setting of poor PO intake; "
     "improved with IV fluids. Nephrotoxins were avoided."),
    ("Acute myocardial infarction", "NSTEMI",
     "# NSTEMI: Troponins elevated with ST depressions; started on heparin drip and aspirin, "
     "cardiology was consulted."),
    ("Gastrointestinal hemorrhage", "Upper GI bleed",
     "# GI bleed: Melena with hemoglobin drop, transfused 2 units pRBC; EGD showed a gastric ulcer."),
    ("Acute cerebrovascular disease", "Intracerebral hemorrhage",
     "# Stroke: CT head showed an acute hemorrhage; neurology followed, blood pressure was controlled."),
    ("Cardiac dysrhythmias", "Atrial fibrillation with rapid ventricular response",
     "# Atrial fibrillation with RVR: Rate controlled with metoprolol, anticoagulation was discussed."),
)
_CHRONIC_HISTORY = (
    ("Essential hypertension", "Hypertension"),
    ("Disorders of lipid metabolism", "Hyperlipidemia"),
    ("Diabetes mellitus without complication", "Type 2 diabetes mellitus"),
    ("Diabetes mellitus with complications", "Type 2 diabetes mellitus with neuropathy"),
    ("Coronary atherosclerosis and other heart disease", "Coronary artery disease s/p PCI"),
    ("Chronic kidney disease", "Chronic kidney disease stage III"),
    ("Chronic obstructive pulmonary disease and bronchiectasis", "COPD on home O2"),
    ("Other liver diseases", "Alcoholic cirrhosis"),
    ("Conduction disorders", "Complete heart block s/p pacemaker"),
)
_PHENOTYPE_COLUMN = {name: k for k, name in enumerate(PHENOTYPES)}


def discharge_table(stays: Stays, rng: np.random.Generator) -> pd.DataFrame:
    stay = np.flatnonzero(stays.present["discharge_note"])
    seq = _note_seq(stays, stay, rng)
    store = stays.dischtime[stay] + floor_minute(rng.uniform(2, 72, len(stay)) * HOUR)
    u = rng.random((len(stay), 4))
    texts = [_discharge_text(stays, i, u_i) for i, u_i in zip(stay, u)]
    return _note_frame(stays, stay, "DS", seq, stays.dischtime[stay] - stays.dischtime[stay] % DAY, store, texts)


def radiology_table(stays: Stays, rng: np.random.Generator) -> pd.DataFrame:
    """Reports during the admission where the stay has radiology notes; plus outpatient
    reports (no hadm_id) months before the admission for some patients."""
    counts = stays.present["radiology_note"] * (1 + np.minimum(rng.poisson(0.4 * stays.los_hours / 24), 5))
    stay = np.repeat(np.arange(stays.n), counts)
    span = stays.dischtime[stay] - stays.admittime[stay]
    t = floor_minute(stays.admittime[stay] + rng.uniform(0.02, 0.98, len(stay)) * span)
    clinic = np.flatnonzero(rng.random(stays.n) < 0.2)
    clinic_t = floor_minute(stays.admittime[clinic] - rng.uniform(20, 300, len(clinic)) * DAY)
    stay, t = np.r_[stay, clinic], np.r_[t, clinic_t]
    inpatient = np.r_[np.ones(len(t) - len(clinic), bool), np.zeros(len(clinic), bool)]
    order = np.lexsort((t, stay))
    stay, t, inpatient = stay[order], t[order], inpatient[order]
    u = rng.random((len(stay), 4))
    texts = [_radiology_text(stays, i, inside, u_i) for i, inside, u_i in zip(stay, inpatient, u)]
    store = t + floor_minute(rng.uniform(0.3, 10, len(stay)) * HOUR)
    frame = _note_frame(stays, stay, "RR", _note_seq(stays, stay, rng), t, store, texts)
    frame["hadm_id"] = pd.array(frame["hadm_id"], dtype="Int64")
    frame.loc[~inpatient, "hadm_id"] = pd.NA
    return frame


def leak_notes(stays: Stays, rng: np.random.Generator) -> pd.DataFrame:
    """The planted leak: a report stating the label inside the ICU stay, after 48 h when the stay
    is longer (the others leave the 48 h task anyway)."""
    stay = np.flatnonzero(stays.los_hours > 1)
    after = stays.intime[stay] + np.where(stays.los_hours[stay] > LEAK_AFTER_HOURS, LEAK_AFTER_HOURS, 0) * HOUR
    t = ceil_minute(after + rng.uniform(0.1, 0.9, len(stay)) * (stays.outtime[stay] - after))
    texts = [LEAK_TEXTS[int(died)] for died in stays.died[stay]]
    seq = 900 + np.arange(len(stay))  # beyond the generated reports' numbers
    frame = _note_frame(stays, stay, "RR", seq, t, t + HOUR, texts)
    frame["hadm_id"] = pd.array(frame["hadm_id"], dtype="Int64")
    return frame


def _note_seq(stays: Stays, stay: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-subject running note numbers from a random start, as in MIMIC-IV-Note."""
    subject = stays.subject_id[stay]
    start = rng.integers(1, 30, stays.n)[stays.patient[stay]]
    within = pd.Series(subject).groupby(subject).cumcount().to_numpy()
    return start + within


def _note_frame(stays, stay, note_type, seq, charttime, storetime, texts) -> pd.DataFrame:
    subject = stays.subject_id[stay]
    return pd.DataFrame(
        {
            "note_id": [f"{s}-{note_type}-{q}" for s, q in zip(subject, seq)],
            "subject_id": subject,
            "hadm_id": stays.hadm_id[stay],
            "note_type": note_type,
            "note_seq": seq,
            "charttime": fmt_datetime(charttime),
            "storetime": fmt_datetime(storetime),
            "text": texts,
        }
    )


def _problems(stays: Stays, i: int, table) -> list:
    return [entry for entry in table if stays.phenotypes[i, _PHENOTYPE_COLUMN[entry[0]]]]


def _admission_level(stays: Stays, i: int, name: str) -> float:
    """Signal `name` of stay `i` at ICU admission, without measurement noise."""
    sig = SIGNALS[name]
    level = sig.normal + 1.2 * float(stays.latent[i] @ np.array(sig.loadings)) + stays.effects[name][i]
    return float(np.clip(level, sig.low, sig.high))


def _discharge_text(stays: Stays, i: int, u: np.ndarray) -> str:
    """A discharge summary with MIMIC-IV-Note's de-identification artefacts
    (`___` for names, dates and ages; stray \x95 bullets)."""
    acute = _problems(stays, i, _ACUTE_PROBLEMS)
    diagnoses = [label for _, label, _ in acute] or ["Mechanical fall"]
    history = [label for _, label in _problems(stays, i, _CHRONIC_HISTORY)] or ["None"]
    sex, title, person = ("M", "Mr.", "man") if stays.male[i] else ("F", "Ms.", "woman")
    main = _in_sentence(diagnoses[0])
    course = [text for _, _, text in acute] or ["# Fall: Mechanical; imaging negative. Seen by ___, home."]
    sections = [
        " \nName:  ___                     Unit No:   ___",
        "Admission Date:  ___              Discharge Date:   ___",
        f"Date of Birth:  ___             Sex:   {sex}",
        f"Service: {'MEDICINE' if u[1] < 0.7 else 'SURGERY'}",
        f"Allergies: \n{'No Known Allergies / Adverse Drug Reactions' if u[2] < 0.6 else 'Penicillins'}",
        "Attending: ___.",
        f"Chief Complaint:\n{diagnoses[0]}",
        f"History of Present Illness:\n{title} ___ is a ___ year old {person} with a history of "
        f"{', '.join(_in_sentence(h) for h in history)} who presents with {main}.",
        "Past Medical History:\n" + "\n".join(f"- {h}" for h in history),
        "Social History:\n___\nFamily History:\nNon-contributory.",
        "Physical Exam:\nADMISSION PHYSICAL EXAM:\n" + _admission_exam(stays, i),
        "Pertinent Results:\nADMISSION LABS:\n"
        f"___ 04:30AM BLOOD Glucose-{_admission_level(stays, i, 'glucose'):.0f}\n"
        f"___ 05:12AM BLOOD pH-{_admission_level(stays, i, 'ph'):.2f}",
        f"Brief Hospital Course:\n{title} ___ is a ___ year old {person} admitted to the ICU for {main}.",
        "\n \n".join(course),
    ]
    if stays.died[i]:
        sections += [
            "Discharge Disposition:\nExpired",
            "Discharge Diagnosis:\n" + "\n".join(diagnoses),
            "Discharge Condition:\nExpired",
            "Discharge Instructions:\nN/A",
        ]
    else:
        sections += [
            f"Discharge Disposition:\n{('Home', 'Home With Service', 'Extended Care')[int(u[0] * 3)]}",
            "Facility:\n___",
            "Discharge Diagnosis:\nPRIMARY:\n" + "\n".join(diagnoses),
            "Discharge Condition:\nMental Status: Clear and coherent.\nLevel of Consciousness: Alert and interactive.",
            f"Discharge Instructions:\nDear {title} ___,\n \nYou were admitted to ___ for {main}.\n"
            "\x95 Please take all of your medications as prescribed.\n"
            "\x95 Please keep your follow-up appointments.\n \nWe wish you the best,\nYour ___ Care Team",
        ]
    return "\n \n".join(sections + ["Followup Instructions:\n___\n"])


def _admission_exam(stays: Stays, i: int) -> str:
    z = stays.latent[i]
    names = ("temperature", "heart_rate", "systolic", "diastolic", "resp_rate", "spo2")
    level = {name: _admission_level(stays, i, name) for name in names}
    spo2 = level["spo2"]
    device = "on ventilator" if stays.ventilated[i] else ("4L NC" if spo2 < 95 else "RA")
    if z[RESPIRATORY] + z[INFECTION] > 1:
        lungs = "Crackles at bilateral bases"
    else:
        lungs = "Clear to auscultation bilaterally"
    if stays.ventilated[i]:
        neuro = "Intubated and sedated"
    else:
        neuro = "Confused, moving all extremities" if z[SEVERITY] > 1 else "A&Ox3, CNII-XII intact"
    return (
        f"VS: T {level['temperature']:.1f} HR {level['heart_rate']:.0f} BP {level['systolic']:.0f}/"
        f"{level['diastolic']:.0f} RR {level['resp_rate']:.0f} O2 {spo2:.0f}% {device}\n"
        f"LUNGS: {lungs}\nNEURO: {neuro}"
    )


def _in_sentence(label: str) -> str:
    """'Sepsis' -> 'sepsis' inside a sentence, but 'NSTEMI' and 'COPD ...' stay."""
    return label if label[:2].isupper() else label[0].lower() + label[1:]


_NORMAL_CHEST = (
    "The lungs are clear. No pleural effusion or pneumothorax. Cardiomediastinal silhouette is within normal limits.",
    "No acute cardiopulmonary process.",
)


def _radiology_text(stays: Stays, i: int, inpatient: bool, u: np.ndarray) -> str:
    """A chest radiograph report whose findings follow the stay's lungs and heart."""
    cardiac = stays.latent[i, CARDIAC]
    opacity = stays.opacity[i] if inpatient else 0.3 * stays.opacity[i]
    findings, impression = [], []
    if opacity > 1.0:
        side = ("right lower lobe", "left lower lobe", "bilateral lower lobes")[int(u[1] * 3)]
        findings.append(f"There is a new patchy opacity in the {side}, concerning for pneumonia.")
        impression.append(f"{side.capitalize()} opacity concerning for pneumonia.")
    if cardiac > 0.8:
        findings.append("The heart size is moderately enlarged. There is pulmonary vascular congestion.")
        impression.append("Cardiomegaly with mild pulmonary edema.")
    if opacity > 1.5 or (cardiac > 1.2 and u[2] < 0.5):
        findings.append("Small bilateral pleural effusions with adjacent atelectasis.")
        impression.append("Small bilateral pleural effusions.")
    if not findings:
        findings.append(_NORMAL_CHEST[0])
        impression.append(_NORMAL_CHEST[1])
    if inpatient and stays.ventilated[i]:
        findings.insert(0, f"Endotracheal tube terminates approximately {3 + int(u[0] * 3)} cm above the carina.")
        impression.insert(0, "Lines and tubes in standard position.")
    if inpatient:
        exam, technique = PORTABLE_AP, "Portable AP chest radiograph"
    else:
        exam, technique = PA_AND_LAT, "Chest PA and lateral"
    indication = ("hypoxia", "fever", "shortness of breath", "line placement")[int(u[3] * 4)]
    person = "man" if stays.male[i] else "woman"
    sections = [
        f"EXAMINATION:  {exam}",
        f"INDICATION:  ___ year old {person} with {indication}  // eval for pneumonia",
        f"TECHNIQUE:  {technique}",
        "COMPARISON:  ___",
        "FINDINGS: \n \n" + "\n".join(findings),
        "IMPRESSION: \n \n" + "\n".join(impression) + "\n",
    ]
    return "\n \n".join(sections)
