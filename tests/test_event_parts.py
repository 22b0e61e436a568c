"""A long table's rows on disk in parts (`data.event_parts`): each row lands in its part, in the
order appended, categories survive as codes, rewrites replace the files, and the stay-range
parts come back in stay order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clintraj.data import event_parts
from clintraj.data.event_parts import PartWriter, key_parts, parts_for, stay_parts
from clintraj.data.modalities import event_stays, stay_slices

NAMES = pd.Index(["BUN", "albumin", "sodium"], dtype="string")


def chunk(stays, names, first_row):
    return pd.DataFrame({"stay_id": np.asarray(stays, dtype=np.int64),
                         "name": pd.Categorical.from_codes(names, categories=NAMES),
                         "row": np.arange(first_row, first_row + len(stays), dtype=np.int64)})


def test_rows_go_to_their_part_in_the_order_appended(tmp_path):
    writer = PartWriter(tmp_path / "p", 3)
    writer.append(chunk([5, 1, 9, 1], [0, 1, 2, 2], 0), np.array([1, 0, 2, 0]))
    writer.append(chunk([1, 9], [1, 0], 4), np.array([0, 2]))
    parts = writer.close()
    frames = list(parts.frames())
    assert len(parts) == 6 and [len(f) for f in frames] == [3, 1, 2]
    assert frames[0]["row"].tolist() == [1, 3, 4] and frames[2]["row"].tolist() == [2, 5]
    assert frames[0]["name"].tolist() == ["albumin", "sodium", "albumin"]
    assert frames[2]["name"].cat.categories.equals(NAMES)  # the categories, not just the codes used
    assert parts.stays().tolist() == [1, 5, 9]


def test_a_part_without_rows_is_skipped_and_no_rows_still_read_as_an_empty_frame(tmp_path):
    writer = PartWriter(tmp_path / "p", 3)
    writer.append(chunk([7], [2], 0), 2)
    parts = writer.close()
    assert [f["stay_id"].tolist() for f in parts.frames()] == [[7]]
    empty = parts.rewrite(lambda frame: frame[frame["stay_id"] < 0], tmp_path / "none")
    assert not (tmp_path / "p").exists()  # a rewrite spends the parts it read
    (frame,) = empty.frames()
    assert len(empty) == 0 and frame.empty and list(frame.columns) == ["stay_id", "name", "row"]
    assert isinstance(frame["name"].dtype, pd.CategoricalDtype) and event_stays(empty).tolist() == []


def test_other_categories_in_one_column_are_refused(tmp_path):
    writer = PartWriter(tmp_path / "p", 1)
    writer.append(chunk([1], [0], 0), 0)
    other = pd.DataFrame({"stay_id": [2], "name": pd.Categorical(["potassium"]), "row": [1]})
    with pytest.raises(ValueError, match="column name appended with other categories"):
        writer.append(other, 0)


def test_stay_parts_cut_the_sorted_cohort_and_key_parts_keep_a_key_together(monkeypatch):
    monkeypatch.setattr(event_parts, "STAYS_PER_PART", 2)
    cohort = np.array([40, 10, 30, 20, 50])
    assert parts_for(cohort) == 3
    assert stay_parts(cohort)(np.array([10, 20, 25, 30, 40, 50, 99])).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert key_parts(3)(np.array([3, 4, 5, 6, 7])).tolist() == [0, 1, 2, 0, 1]


def test_stay_parts_slice_in_stay_order(tmp_path, monkeypatch):
    """Slices of the parts, as of one frame: `modalities.stay_slices` over events on disk."""
    monkeypatch.setattr(event_parts, "STAYS_PER_PART", 2)
    events = chunk([1, 1, 2, 3, 3, 3, 4, 5], [0, 1, 2, 0, 1, 2, 0, 1], 0)
    cohort = np.array([1, 2, 3, 4, 5])
    writer = PartWriter(tmp_path / "p", parts_for(cohort))
    shuffled = events.iloc[[6, 0, 3, 7, 1, 4, 2, 5]]
    writer.append(shuffled, stay_parts(cohort)(shuffled["stay_id"].to_numpy()))
    parts = writer.close().rewrite(lambda frame: frame.sort_values(["stay_id", "row"]), tmp_path / "sorted")
    slices = [s["stay_id"].tolist() for s in stay_slices(parts, stays=1)]
    assert slices == [[1, 1], [2], [3, 3, 3], [4], [5]]
    joined = pd.concat(list(parts.frames()), ignore_index=True)
    pd.testing.assert_frame_equal(joined, events)
