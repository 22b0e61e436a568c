"""MIMIC-IV-Note of a chunk's stays: discharge summaries and radiology reports whose
findings follow the stay's latent state, and the planted leak (`leak=True`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clintraj.data.synthetic.latent import INFECTION, PHENOTYPES, RESPIRATORY, SEVERITY
from clintraj.data.synthetic.mimic import phenotypes as ph
from clintraj.data.synthetic.mimic.chest import CHRONIC_DEVICES, ChestFindings
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


def discharge_table(stays: Stays, findings: ChestFindings, rng: np.random.Generator) -> pd.DataFrame:
    stay = np.flatnonzero(stays.present["discharge_note"])
    seq = _note_seq(stays, stay, rng)
    store = stays.dischtime[stay] + floor_minute(rng.uniform(2, 72, len(stay)) * HOUR)
    u = rng.random((len(stay), 4))
    texts = [_discharge_text(stays, findings, i, u_i) for i, u_i in zip(stay, u)]
    return _note_frame(stays, stay, "DS", seq, stays.dischtime[stay] - stays.dischtime[stay] % DAY, store, texts)


def radiology_table(stays: Stays, findings: ChestFindings, rng: np.random.Generator) -> pd.DataFrame:
    """Reports during the admission where the stay has radiology notes; plus outpatient
    reports (no hadm_id) months before the admission for some patients."""
    counts = stays.present["radiology_note"] * (1 + np.minimum(rng.poisson(0.4 * stays.los_hours / 24), 5))
    stay = np.repeat(np.arange(stays.n), counts)
    in_icu = rng.random(len(stay)) < 0.7  # most films of an ICU admission are taken in the ICU
    start = np.where(in_icu, stays.intime[stay], stays.admittime[stay])
    span = np.where(in_icu, stays.outtime[stay], stays.dischtime[stay]) - start
    t = floor_minute(start + rng.uniform(0.02, 0.98, len(stay)) * span)
    clinic = np.flatnonzero(rng.random(stays.n) < 0.2)
    clinic_t = floor_minute(stays.admittime[clinic] - rng.uniform(20, 300, len(clinic)) * DAY)
    stay, t = np.r_[stay, clinic], np.r_[t, clinic_t]
    inpatient = np.r_[np.ones(len(t) - len(clinic), bool), np.zeros(len(clinic), bool)]
    order = np.lexsort((t, stay))
    stay, t, inpatient = stay[order], t[order], inpatient[order]
    u = rng.random((len(stay), 4))
    texts = [_radiology_text(stays, findings, i, inside, u_i) for i, inside, u_i in zip(stay, inpatient, u)]
    store = t + floor_minute(rng.uniform(0.3, 10, len(stay)) * HOUR)
    frame = _note_frame(stays, stay, "RR", _note_seq(stays, stay, rng), t, store, texts)
    frame["hadm_id"] = pd.array(frame["hadm_id"], dtype="Int64")
    frame.loc[~inpatient, "hadm_id"] = pd.NA
    return frame


# Mean characters of a real note (`generate`'s `note_chars`): discharge summaries 2,267 tokens on
# average (MIMIC-IV-Ext-BHC, PhysioNet 2024), about 10,500 characters; radiology reports about
# 1,200, our estimate (2.3 M reports; no published mean found).
REAL_NOTE_CHARS = {"discharge_note": 10_500, "radiology_note": 1_200}
_FILLER = (
    "patient seen and examined. vital signs reviewed with nursing. continue current management and "
    "reassess in the morning. labs and imaging reviewed; see results section for values. plan discussed "
    "with the patient and family, who agree. medications reconciled on transfer. "
)


def padded(texts: pd.Series, length: int) -> pd.Series:
    """Each text followed by a blank line and filler up to at least `length` characters."""
    def pad(text: str) -> str:
        short = length - len(text) - 2
        return text if short <= 0 else text + "\n\n" + (_FILLER * (short // len(_FILLER) + 1))[:short]
    return texts.map(pad)


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


def _discharge_text(stays: Stays, findings: ChestFindings, i: int, u: np.ndarray) -> str:
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
        f"Service: {'SURGERY' if stays.surgical[i] == (u[1] < 0.9) else 'MEDICINE'}",
        f"Allergies: \n{'No Known Allergies / Adverse Drug Reactions' if u[2] < 0.6 else 'Penicillins'}",
        "Attending: ___.",
        f"Chief Complaint:\n{diagnoses[0]}",
        "Major Surgical or Invasive Procedure:\n" + ("\n".join(_procedures(stays, findings, i)) or "None"),
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


_PROCEDURES = (  # (device of ChestFindings or phenotype, procedure)
    ("endotracheal_tube", "Endotracheal intubation"), ("central_line", "Central venous line placement"),
    ("chest_tube", "Chest tube placement"), ("GI bleed", "EGD"), ("enteric_tube", "Nasogastric tube placement"),
)


def _procedures(stays: Stays, findings: ChestFindings, i: int) -> list[str]:
    def had(key: str) -> bool:
        return bool(findings.devices[key][i] if key in findings.devices else stays.phenotypes[i, ph.column(key)])

    done = [name for key, name in _PROCEDURES if had(key)]
    if stays.surgical[i] and findings.devices["sternotomy"][i]:
        done.insert(0, "Coronary artery bypass graft")
    return done


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
_DEVICE_SENTENCES = {
    "endotracheal_tube": "Endotracheal tube terminates approximately {cm} cm above the carina.",
    "tracheostomy": "Tracheostomy tube in place.",
    "central_line": "Right internal jugular central venous catheter terminates in the low SVC.",
    "enteric_tube": "Enteric tube courses below the diaphragm, tip in the stomach.",
    "chest_tube": "Right chest tube in place.",
    "pacemaker": "Left chest wall pacemaker with leads in the right atrium and right ventricle.",
    "sternotomy": "Median sternotomy wires are intact.",
}
# Why the film was ordered, as the ordering clinician writes it: (reason, question) by what the
# stay has, the first that applies (a share of reports gives the generic one).
_INDICATIONS = (
    ("endotracheal_tube", "intubation", "eval ETT position"),
    ("chest_tube", "chest tube", "eval for pneumothorax"),
    ("central_line", "new central line", "eval line placement"),
    ("pacemaker", "pacemaker", "eval lead position"),
    ("opacity", "fever and hypoxia", "eval for pneumonia"),
    ("heart", "CHF exacerbation", "eval for edema"),
)


def _radiology_text(stays: Stays, findings: ChestFindings, i: int, inpatient: bool, u: np.ndarray) -> str:
    """A chest radiograph report that words the stay's `ChestFindings` (lines and tubes first, then
    lungs, heart, pleura, aorta); an outpatient film shows the chronic findings only. Two layouts of
    MIMIC-CXR: findings then impression, or (portable films) the impression alone."""
    acute = 1.0 if inpatient else 0.3
    opacity, heart = acute * findings.opacity[i], acute * findings.heart[i]
    devices = [d for d, flag in findings.devices.items() if flag[i] and (inpatient or d in CHRONIC_DEVICES)]
    lines = [_DEVICE_SENTENCES[d].format(cm=3 + int(u[0] * 3)) for d in devices]
    findings_text, impression = [], []
    if findings.hyperinflation[i]:
        findings_text.append("The lungs are hyperinflated with flattening of the diaphragms.")
        impression.append("Hyperinflation consistent with COPD.")
    if opacity > 1.0:
        side = ("right lower lobe", "left lower lobe", "bilateral lower lobes")[int(u[1] * 3)]
        findings_text.append(f"There is a new patchy opacity in the {side}, concerning for pneumonia.")
        impression.append(f"{side.capitalize()} opacity concerning for pneumonia.")
    if inpatient and findings.edema[i]:
        findings_text.append("There is pulmonary vascular congestion with perihilar haziness.")
        impression.append("Mild pulmonary edema.")
    if heart > 0.8:
        grade = "severely" if heart > 1.8 else "moderately"
        findings_text.append(f"The heart size is {grade} enlarged.")
        impression.append(f"{grade.replace('ly', '').capitalize()} cardiomegaly.")
    if inpatient and findings.effusion[i]:
        findings_text.append("Small bilateral pleural effusions with adjacent atelectasis.")
        impression.append("Small bilateral pleural effusions.")
    if inpatient and findings.pneumothorax[i]:
        findings_text.append("There is a small right apical pneumothorax.")
        impression.append("Small right apical pneumothorax.")
    if findings.calcified_aorta[i]:
        findings_text.append("The aorta is calcified and tortuous.")
    if not impression:
        findings_text.append(_NORMAL_CHEST[0])
        impression.append(_NORMAL_CHEST[1])
    person = "man" if stays.male[i] else "woman"
    if inpatient:
        exam = PORTABLE_AP
        have = set(devices) | {k for k, grade in (("opacity", opacity), ("heart", heart)) if grade > 1.0}
        reasons = [(r, q) for key, r, q in _INDICATIONS if key in have and u[3] < 0.85]
        reason, question = reasons[0] if reasons else ("shortness of breath", "eval for acute process")
    else:
        exam, reason, question = PA_AND_LAT, "cough", "eval for pneumonia"
    sections = [f"EXAMINATION:  {exam}", f"INDICATION:  ___ year old {person} with {reason}  // {question}",
                "COMPARISON:  ___"]
    if inpatient and u[2] < 0.6:  # a portable film: the impression alone
        sections.append("IMPRESSION: \n \n" + "\n".join(lines + impression) + "\n")
    else:
        sections += ["FINDINGS: \n \n" + "\n".join(lines + findings_text),
                     "IMPRESSION: \n \n" + "\n".join(impression) + "\n"]
    return "\n \n".join(sections)
