"""What the MEDS reader reads: the code map (which codes make stays, outcomes and modalities; a
YAML file, shipped presets in `clintraj/configs/meds/`) and `MedsConfig`.

Codes are matched by glob patterns over the whole code (`*` any run of characters, `?` one
character; `LAB//*` matches every code that starts with `LAB//`). A code takes the first role
that matches it, structural roles first: stay admission / discharge, outcome admission /
discharge, death disposition, birth, the death record (`MEDS_DEATH`), then the modalities in
the order the map lists them. Structural codes are never an input: an in-hospital death
disposition or a death record in a timeline would state the label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import meds
import yaml

from clintraj.config import ConfigError, from_dict
from clintraj.data.modalities import Modality, TermRule

PRESETS = ("mimic_iv", "eicu")  # clintraj/configs/meds/<name>.yaml


@dataclass
class CodeModality:
    """One modality and the codes that feed it.

    terms: presence of each frequent code; values: the sum of each frequent numeric code's values
    (a code that never carries a number counts its events); static: known at ICU admission
    (categorical codes `A//B` as column `A` = `B`, numbers as themselves, plus the age); text:
    each event's `text_value` is a note."""

    kind: Literal["terms", "values", "static", "text"] = "terms"
    codes: list[str] = field(default_factory=list)
    after_stay: bool = False  # known only after the stay (a discharge summary): an input of no task


@dataclass
class Interval:
    """The codes that open and close an interval (an ICU stay, a hospital admission)."""

    admission: list[str] = field(default_factory=list)
    discharge: list[str] = field(default_factory=list)


@dataclass
class CodeMap:
    """Which MEDS codes make the cohort's stays, their outcomes and their modalities."""

    stays: Interval = field(default_factory=Interval)  # a stay: an admission code, then a discharge code
    # The interval whose discharge gives in-hospital mortality and length of stay (a hospital
    # admission); None: the stay's own discharge.
    outcome: Interval | None = None
    death: list[str] = field(default_factory=list)  # discharge codes (of the outcome) that mean death in hospital
    birth: list[str] = field(default_factory=lambda: [meds.birth_code])  # the age at admission
    modalities: dict[str, CodeModality] = field(default_factory=dict)

    def platform_modalities(self) -> tuple[Modality, ...]:
        return tuple(Modality(name, m.kind, m.after_stay) for name, m in self.modalities.items())


@dataclass
class MedsConfig:
    codes: str = "mimic_iv"  # a shipped code map (mimic_iv, eicu) or a YAML file of one
    # "meds": the dataset's own metadata/subject_splits.parquet (train -> train, tuning -> val,
    # held_out -> test); "platform": the missingness-aware patient split.
    splits: Literal["platform", "meds"] = "platform"
    labels: dict[str, str] = field(default_factory=dict)  # task -> ACES / MEDS label file or folder
    label_tolerance_seconds: float = 60.0  # a label's prediction_time this close to a stay's is that stay's
    history_hours: float = 0.0  # events this long before ICU admission join the stay (tasks: lookback_hours)
    values: TermRule = field(default_factory=TermRule)  # numeric codes kept: present in >= 5% of training stays
    clean_notes: bool = True  # notes through `data.mimic.notes.clean_note_text`
    batch_rows: int = 131_072  # rows per streamed record batch


def load_code_map(name_or_path: str | Path) -> CodeMap:
    """A shipped code map by name, or a YAML file of one (unknown keys and bad types are errors
    naming the key and the file)."""
    path = Path(name_or_path)
    if not path.is_file():
        shipped = Path(__file__).resolve().parents[2] / "configs" / "meds" / f"{name_or_path}.yaml"
        if str(name_or_path) not in PRESETS or not shipped.is_file():
            raise ConfigError(f"MEDS code map not found: {name_or_path} (nor a shipped preset: {', '.join(PRESETS)})")
        path = shipped
    values = yaml.safe_load(path.read_text()) or {}
    code_map = from_dict(CodeMap, values, str(path))
    if not code_map.stays.admission or not code_map.stays.discharge:
        raise ConfigError(f"{path}: stays needs admission and discharge code patterns")
    if not code_map.modalities:
        raise ConfigError(f"{path}: modalities maps no code to any modality")
    for name, modality in code_map.modalities.items():
        if not modality.codes:
            raise ConfigError(f"{path}: modality {name!r} has no code patterns")
    return code_map


def glob_regex(pattern: str) -> str:
    """A glob pattern as an anchored regular expression that Python and RE2 (Arrow) read alike."""
    parts = re.split(r"(\*|\?)", pattern)
    body = "".join(".*" if p == "*" else "." if p == "?" else re.escape(p) for p in parts)
    return f"^(?:{body})$"


def any_of(patterns: list[str]) -> str:
    return "|".join(glob_regex(p) for p in patterns) or "$^"
