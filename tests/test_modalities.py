"""A terms or values modality's per-stay and per-event tables, by hand."""

import numpy as np
import pandas as pd

from clintraj.data.modalities import Modality, TermRule, aggregate

LAB = Modality("lab", "values")
DRUG = Modality("drug", "terms")


def test_values_sum_per_stay_and_per_event_time_a_missing_value_adding_nothing():
    events = pd.DataFrame({"stay_id": [7, 3, 3, 3, 3, 9],
                           "time_hours": [1.0, 2.0, 2.0, 5.0, 5.0, 0.5],
                           "name": ["k", "na", "na", "k", "other", "other"],
                           "value": [4.0, 140.0, 2.0, np.nan, 1.0, 3.0]})
    table = aggregate(LAB, events, vocabulary=["k", "na"])
    assert table.columns.tolist() == ["stay_id", "lab:k", "lab:na"]
    assert table.to_dict("list") == {"stay_id": [3, 7, 9], "lab:k": [0.0, 4.0, 0.0], "lab:na": [142.0, 0.0, 0.0]}
    assert table.dtypes.tolist() == ["int64", "float64", "float64"]
    # stay 9: observed, none of its names frequent: a row of zeros
    per_event = aggregate(LAB, events, vocabulary=["k", "na"], by=("stay_id", "time_hours"))
    assert per_event.to_dict("list") == {"stay_id": [3, 3, 7, 9], "time_hours": [2.0, 5.0, 1.0, 0.5],
                                         "lab:k": [0.0, 0.0, 4.0, 0.0], "lab:na": [142.0, 0.0, 0.0, 0.0]}


def test_terms_are_presence_or_counts():
    events = pd.DataFrame({"stay_id": [2, 2, 2, 1], "time_hours": [0.0, 1.0, 1.0, 3.0],
                           "name": ["b", "b", "a", "c"], "value": [None] * 4})
    presence = aggregate(DRUG, events, vocabulary=["a", "b"])
    assert presence.to_dict("list") == {"stay_id": [1, 2], "drug:a": [0.0, 1.0], "drug:b": [0.0, 1.0]}
    counts = aggregate(DRUG, events, vocabulary=["a", "b"], rule=TermRule(encoding="count"))
    assert counts["drug:b"].tolist() == [0.0, 2.0]
    assert aggregate(DRUG, events.iloc[:0], vocabulary=["a", "b"]).columns.tolist() == ["stay_id", "drug:a", "drug:b"]
