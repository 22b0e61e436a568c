"""Codes to roles: each distinct code is matched once against the code map's patterns; a batch's
code column then maps through its dictionary (`CodeRouter.route`).

Roles: `UNMAPPED`, the structural roles (`STRUCTURAL`: never an input) and one per modality
(`MODALITY + i`, in the code map's order).
"""

from __future__ import annotations

import re

import meds
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clintraj.data.meds.config import CodeMap, any_of

UNMAPPED = 0
STAY_ADMISSION, STAY_DISCHARGE, OUTCOME_ADMISSION, OUTCOME_DISCHARGE, BIRTH, DEATH_RECORD = range(1, 7)
MODALITY = 7
STRUCTURAL = {
    STAY_ADMISSION: "stay admission", STAY_DISCHARGE: "stay discharge", OUTCOME_ADMISSION: "outcome admission",
    OUTCOME_DISCHARGE: "outcome discharge", BIRTH: "birth", DEATH_RECORD: f"death record ({meds.death_code})",
}


class CodeRouter:
    """The role of every code, and a global integer id per distinct code (the order first seen)."""

    def __init__(self, code_map: CodeMap):
        outcome = code_map.outcome
        rules = [(STAY_ADMISSION, code_map.stays.admission), (STAY_DISCHARGE, code_map.stays.discharge),
                 (OUTCOME_ADMISSION, outcome.admission if outcome else []),
                 (OUTCOME_DISCHARGE, [*(outcome.discharge if outcome else []), *code_map.death]),
                 (BIRTH, code_map.birth), (DEATH_RECORD, [meds.death_code])]
        rules += [(MODALITY + i, m.codes) for i, m in enumerate(code_map.modalities.values())]
        self._rules = [(role, re.compile(any_of(patterns), re.DOTALL)) for role, patterns in rules if patterns]
        self.boundary_regex = any_of([*code_map.stays.admission, *code_map.stays.discharge,
                                      *(outcome.admission if outcome else []), *(outcome.discharge if outcome else []),
                                      *code_map.death, *code_map.birth])
        self._death = re.compile(any_of(code_map.death), re.DOTALL)
        self.ids: dict[str, int] = {}
        self.codes: list[str] = []
        self.roles: list[int] = []

    def role_of(self, code: str) -> int:
        return next((role for role, regex in self._rules if regex.match(code)), UNMAPPED)

    def is_death(self, code: str) -> bool:
        return bool(self._death.match(code))

    def route(self, codes: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(role, global code id) per row of a code column."""
        encoded = pc.dictionary_encode(codes)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        local = np.array([self._id(code) for code in encoded.dictionary.to_pylist()], dtype=np.int64)
        roles = np.array([self.roles[i] for i in local], dtype=np.int8)
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        return roles[indices], local[indices]

    def _id(self, code: str) -> int:
        found = self.ids.get(code)
        if found is None:
            found = self.ids[code] = len(self.codes)
            self.codes.append(code)
            self.roles.append(self.role_of(code))
        return found

    def prefix(self, code_id: int) -> str:
        """A code's vocabulary prefix (before the first '//'): how unmapped codes are reported."""
        return self.codes[code_id].split("//", 1)[0]
