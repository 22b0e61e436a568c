"""The gate between clinical data and MLflow: what it refuses, what it lets through, and how."""

import pandas as pd
import pytest

from clintraj import disclosure
from clintraj.disclosure import DisclosureError


def test_tables_with_identifiers_text_or_dates_are_refused_naming_file_and_column(tmp_path):
    secret = "Patient Jane Roe, seen 2150-03-17"
    pd.DataFrame({"stay_id": [141009], "y": [1]}).to_parquet(tmp_path / "a.parquet")
    pd.DataFrame({"index": [0], "text": [secret]}).to_csv(tmp_path / "b.csv", index=False)
    pd.DataFrame({"index": [0], "when": pd.to_datetime(["2150-03-17"])}).to_parquet(tmp_path / "c.parquet")
    (tmp_path / "d.pt").write_bytes(b"weights")
    for name, column in (("a.parquet", "stay_id"), ("b.csv", "text"), ("c.parquet", "when")):
        with pytest.raises(DisclosureError, match=rf"{name}: column '{column}'") as refused:
            disclosure.check_file(tmp_path / name)
        assert secret not in str(refused.value) and "141009" not in str(refused.value)
    with pytest.raises(DisclosureError, match=r"d\.pt: a \.pt file is not one the platform publishes"):
        disclosure.check_file(tmp_path / "d.pt")


def test_predictions_leave_keyed_by_their_index_and_the_mapping_stays(tmp_path):
    predictions = pd.DataFrame({"stay_id": [30, 10, 20], "y": [1, 0, 1], "output": [0.9, 0.1, 0.7]})
    public, mapping = disclosure.by_index(predictions)
    assert public.to_dict("list") == {"index": [0, 1, 2], "y": [0, 1, 1], "output": [0.1, 0.7, 0.9]}
    assert mapping.to_dict("list") == {"index": [0, 1, 2], "stay_id": [10, 20, 30]}
    public.to_parquet(tmp_path / "p.parquet")
    disclosure.check_file(tmp_path / "p.parquet")  # passes


def test_locations_leave_without_credentials_or_query_strings():
    assert disclosure.value("s3://KEY:SECRET@bucket/runs/ckpt?X-Amz-Signature=abc") == "s3://bucket/runs/ckpt"
    assert disclosure.values({"lr": 0.1, "data": "/work/d", "n": 3}) == {"lr": 0.1, "data": "/work/d", "n": 3}


def test_a_folder_is_logged_but_what_stays_local(tmp_path):
    from mlflow.tracking import MlflowClient

    from clintraj.tracking import Tracking

    out = tmp_path / "interpretation"
    (out / "stay").mkdir(parents=True)
    (out / "stay" / "heatmap.png").write_bytes(b"\x89PNG")
    (out / "stay" / "stay3_events.csv").write_text("stay_id,text\n141009,Patient Jane Roe\n")
    (out / "summary.json").write_text("{}")
    tracking = Tracking.resolve(None, tmp_path / "mlflow")
    client = MlflowClient(tracking.uri)
    run = client.create_run(tracking.experiment("gate"))
    with pytest.raises(DisclosureError, match="stay3_events.csv: column 'stay_id'"):
        disclosure.log_artifacts(client, run.info.run_id, out, "interpretation")
    assert client.list_artifacts(run.info.run_id) == []  # nothing went before the refusal
    disclosure.log_artifacts(client, run.info.run_id, out, "interpretation", local_only=("stay/stay3_events.csv",))
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "interpretation/stay")}
    assert logged == {"interpretation/stay/heatmap.png"}
    assert {a.path for a in client.list_artifacts(run.info.run_id, "interpretation")} == {
        "interpretation/stay", "interpretation/summary.json"}
