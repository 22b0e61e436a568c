"""The MEDS reader (`clintraj.data.meds`): real MEDS data written by someone else (the MIMIC-IV
demo's MEDS stream) against the platform's own MIMIC-IV reader, the `meds-testing-helpers`
datasets, label files, the dataset's own splits, and bad input."""

import meds
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from clintraj.artifacts.dataset import Dataset
from clintraj.config import ConfigError
from clintraj.data import meds as meds_reader
from clintraj.data import mimic
from clintraj.data.meds import MedsConfig, MedsFormatError, load_code_map
from clintraj.data.meds.events import ATTACHED
from clintraj.data.prepare import PrepareConfig, prepare
from meds_folders import QUICKSTART, quickstart_events, synthetic_icu, write_meds

WINDOWS = {"mortality": 48.0, "los": 12.0}


@pytest.fixture(scope="module")
def demo_meds(tmp_path_factory):
    """The MIMIC-IV demo's MEDS stream as a MEDS folder: three shards, small row groups."""
    if not QUICKSTART.exists():
        pytest.skip(f"the MIMIC-IV demo MEDS stream is absent ({QUICKSTART})")
    return write_meds(quickstart_events(), tmp_path_factory.mktemp("demo-meds"), row_group_size=20_000)


@pytest.fixture(scope="module")
def demo_cohort(demo_meds):
    return meds_reader.build(demo_meds, MedsConfig(), WINDOWS)


@pytest.fixture
def small(tmp_path):
    return synthetic_icu(subjects=30, seed=1)


def test_demo_stays_and_mortality_equal_the_mimic_iv_reader(demo_cohort, mimic_demo_raw):
    """On the demo's 140 ICU stays: the same stays, ICU admission and discharge times and
    in-hospital mortality (hospital_expire_flag there, the admission's HOSPITAL_DISCHARGE//DIED here)."""
    native = mimic.build(mimic_demo_raw, None, None, mimic.MimicConfig(chartevents_stand_in=True, progress=False))
    ours = demo_cohort.stays
    theirs = native.stays.assign(outtime=native.stays["intime"] + pd.to_timedelta(native.stays["unit_hours"], unit="h"))
    assert len(ours) == len(theirs) == 140
    joined = theirs.merge(ours, left_on=["patient_id", "intime"], right_on=["patient_id", "admission_time"],
                          how="outer", indicator=True, suffixes=("_mimic", "_meds"))
    assert (joined["_merge"] == "both").all()
    assert (joined["outtime"].dt.round("s") == joined["discharge_time"]).all()
    assert np.allclose(joined["unit_hours_mimic"], joined["unit_hours_meds"], atol=1 / 3600)
    assert joined["died_mimic"].notna().all() and (joined["died_mimic"] == joined["died_meds"]).all()
    assert int(ours["died"].sum()) == 20  # 20 ICU stays of the 15 admissions that ended in death
    # the MEDS_DEATH records (31, deaths after discharge too) are not the label, and never an input
    assert demo_cohort.reading["row_fates"]["structural: death record (MEDS_DEATH)"] == 31


def test_every_row_has_one_counted_fate(demo_cohort):
    reading = demo_cohort.reading
    assert reading["rows"] == pq.read_metadata(QUICKSTART).num_rows == 916_166
    assert sum(reading["row_fates"].values()) == reading["rows"]
    fates = reading["row_fates"]
    events = sum(len(demo_cohort.events[m]) for m in ("lab", "medication", "diagnosis", "treatment"))
    assert fates[ATTACHED] == events  # no demo event falls in two stays' spans (history_hours 0)
    assert fates["structural: stay admission"] == fates["structural: stay discharge"] == 140
    unmapped = reading["unmapped_codes"]
    assert unmapped["rows"] == fates["code maps to no modality"] == sum(p["rows"] for p in unmapped["by_prefix"].values())
    assert unmapped["by_prefix"]["TRANSFER_TO"] == {"codes": 53, "rows": 1190}
    assert reading["codes_missing_from_metadata"] == {"codes": 0, "rows": 0}
    # valueless rows of a numeric lab code are quarantined by file and row, never kept as zeros
    quarantined = demo_cohort.quarantine.frame()
    assert len(quarantined) == fates["quarantined: numeric code without a numeric_value"] > 0
    assert set(quarantined["table"]) == {"data/0.parquet", "data/1.parquet", "data/2.parquet"}
    assert demo_cohort.events["lab"]["value"].notna().all()


def test_events_sit_at_their_own_time_in_their_stay(demo_cohort, demo_meds):
    stays = demo_cohort.stays.set_index("stay_id")
    lab = demo_cohort.events["lab"]
    assert lab["time_hours"].ge(0).all() and (lab["time_hours"] <= lab["stay_id"].map(stays["unit_hours"]) + 1e-9).all()
    assert (lab.groupby("stay_id")["time_hours"].diff().dropna() >= 0).all()
    # one heart rate row, found by hand in the raw stream: its stay, hours and value
    raw = quickstart_events()
    first = stays.iloc[0]
    subject = int(first["patient_id"])
    rows = raw[(raw["subject_id"] == subject) & (raw["code"] == "LAB//220045//bpm")
               & (raw["time"] >= first["admission_time"]) & (raw["time"] <= first["discharge_time"])].sort_values("time")
    ours = lab[(lab["stay_id"] == first.name) & (lab["name"] == "LAB//220045//bpm")]
    assert len(ours) == len(rows) > 0
    hours = (rows["time"] - first["admission_time"]).dt.total_seconds().to_numpy() / 3600
    assert np.allclose(ours["time_hours"], hours) and np.allclose(ours["value"], rows["numeric_value"])
    demographics = demo_cohort.static["demographics"].set_index("stay_id")
    birth = raw.loc[(raw["subject_id"] == subject) & (raw["code"] == "MEDS_BIRTH"), "time"].iloc[0]
    gender = raw.loc[(raw["subject_id"] == subject) & raw["code"].str.startswith("GENDER//"), "code"].iloc[0]
    assert demographics.loc[first.name, "GENDER"] == gender.split("//")[1]
    assert demographics.loc[first.name, "age"] == pytest.approx((first["admission_time"] - birth).days / 365.25, abs=0.01)


def test_history_hours_attach_earlier_events_at_negative_times(small, tmp_path):
    early = small[small["code"].str.startswith("ICU_ADMISSION")].assign(
        code="LAB//50813//mmol/L", numeric_value=np.float32(2.5), time=lambda f: f["time"] - pd.Timedelta(hours=6))
    root = write_meds(pd.concat([small, early]), tmp_path / "m")
    narrow = meds_reader.build(root, MedsConfig(), WINDOWS).events["lab"]
    wider = meds_reader.build(root, MedsConfig(history_hours=24.0), WINDOWS).events["lab"]
    assert narrow["time_hours"].min() >= 0 and len(wider) == len(narrow) + len(early)
    assert np.allclose(wider.loc[wider["time_hours"] < 0, "time_hours"], -6.0)


def test_prepare_a_meds_folder_with_its_splits_and_the_vocabulary_rule(tmp_path):
    events = synthetic_icu(subjects=120, seed=3)
    icu = events[events["code"].str.startswith("ICU_ADMISSION")]
    rare = icu.iloc[:3].assign(code="LAB//RARE//mg", numeric_value=np.float32(1.0))  # in 3 of 120 stays
    root = write_meds(pd.concat([events, rare]), tmp_path / "m")
    report = prepare(root, tmp_path / "d", PrepareConfig(dataset="meds", meds=MedsConfig(splits="meds")))
    dataset = Dataset(tmp_path / "d")
    assert dataset.name == "meds" and dataset.windows == WINDOWS and report["stays"] == 120
    # diagnoses are timed at hospital discharge (as the MIMIC-IV ETL does), after every ICU stay: no
    # stay has one, nor a procedure, and the two modalities are left out
    assert dataset.modality_kinds == {"demographics": "static", "lab": "values", "medication": "terms"}
    assert report["reading"]["modalities_without_events"] == ["diagnosis", "treatment", "discharge_note",
                                                              "radiology_note"]
    stays, lab = dataset.stays(), dataset.events("lab")
    assert not {"admission_time", "discharge_time", "subject_id"} & set(stays.columns)  # no dates, no raw ids
    # the dataset's own splits: pretraining as given, held-out stays every task's test split
    given = pq.read_table(root / meds.subject_splits_filepath).to_pandas().set_index("subject_id")["split"]
    expected = stays["patient_id"].astype("int64").map(given).map({"train": "train", "tuning": "val", "held_out": "test"})
    assert (stays["split"] == expected).all() and set(stays["split"]) == {"train", "val", "test"}
    for task in ("mortality", "los"):
        cohort = dataset.task_cohort(task).merge(stays, on="stay_id", suffixes=("", "_pretraining"))
        assert len(cohort) and set(cohort["split_pretraining"]) <= {"val", "test"}  # never a pretraining stay
        assert ((cohort["split"] == "test") == (cohort["split_pretraining"] == "test")).all()
        assert set(cohort["split"]) == {"train", "val", "test"}
    # numeric codes by the paper's rule: present in >= 5% of the training stays (3 of 120 are not)
    assert vocabulary(dataset, "lab") == ["LAB//220045//bpm", "LAB//50813//mmol/L"]
    assert "LAB//RARE//mg" in set(lab["name"]) and "## MEDS reading" in dataset.summary


def vocabulary(dataset: Dataset, modality: str) -> list[str]:
    return [c.removeprefix(f"{modality}:") for c in dataset.table(modality).columns if c != "stay_id"]


@pytest.mark.slow
def test_prepare_the_demo_meds_folder(demo_meds, tmp_path):
    """The whole of data.prepare on real MEDS data (about 10 s: the demo's 877 frequent lab codes)."""
    report = prepare(demo_meds, tmp_path / "d", PrepareConfig(dataset="meds"))
    dataset = Dataset(tmp_path / "d")
    stays, lab = dataset.stays(), dataset.events("lab")
    train = stays.loc[stays["split"] == "train", "stay_id"]
    share = lab[lab["stay_id"].isin(train)].drop_duplicates(["stay_id", "name"]).groupby("name").size() / len(train)
    expected = sorted(share[share >= 0.05].index)
    assert 0 < len(expected) < lab["name"].nunique() and vocabulary(dataset, "lab") == expected
    assert report["tasks"]["mortality"]["stays"] > 0 and report["tasks"]["los"]["stays"] > 0
    assert "| code maps to no modality | 4844 |" in dataset.summary


def test_labels_from_an_aces_file_at_the_task_s_prediction_time(small, tmp_path):
    root = write_meds(small, tmp_path / "m")
    stays = meds_reader.build(root, MedsConfig(), WINDOWS).stays
    subject, at_48h = stays["patient_id"].astype("int64"), stays["admission_time"] + pd.Timedelta(hours=48)
    flipped = 1 - stays["died"].astype(int)  # not the events' labels: the file's are read
    rows = pd.concat([
        pd.DataFrame({"subject_id": subject, "prediction_time": at_48h, "boolean_value": flipped.astype(bool)}),
        pd.DataFrame({"subject_id": subject[:10], "prediction_time": at_48h[:10] + pd.Timedelta(seconds=30),
                      "boolean_value": True}),  # a second row within the tolerance: the first is kept
        pd.DataFrame({"subject_id": subject[:7], "prediction_time": at_48h[:7] + pd.Timedelta(hours=2),
                      "boolean_value": True}),  # at no stay's prediction time
    ]).astype({"prediction_time": "datetime64[us]"})
    folder = tmp_path / "labels"
    folder.mkdir()
    pq.write_table(meds.LabelSchema.align(pa.Table.from_pandas(rows, preserve_index=False)), folder / "part-0.parquet")
    cohort = meds_reader.build(root, MedsConfig(labels={"mortality": str(folder)}), WINDOWS)
    assert (cohort.stays["died"] == flipped).all() and (cohort.stays["los_hours"] == stays["los_hours"]).all()
    assert cohort.reading["labels"]["mortality"] == {
        "rows": 47, "rows at a stay's prediction time": 30, "rows at no stay's prediction time": 7,
        "further rows for a stay (first kept)": 10, "stays without a label": 0, "rows without a value": 0}
    # read for another window, the file matches nothing: its labels are not that window's
    other = meds_reader.build(root, MedsConfig(labels={"mortality": str(folder)}), {"mortality": 24.0})
    assert other.stays["died"].isna().all()
    with pytest.raises(MedsFormatError, match=r"part-0\.parquet: no float_value column, which the los task reads"):
        meds_reader.build(root, MedsConfig(labels={"los": str(folder)}), WINDOWS)


def test_meds_testing_helpers_dataset_with_its_task_labels(tmp_path):
    """The static sample dataset of `meds-testing-helpers` (hospital admissions as stays, its own
    boolean task), read with a code map written for it."""
    from meds_testing_helpers.dataset import MEDSDataset
    from meds_testing_helpers.static_sample_data import SIMPLE_STATIC_SHARDED_BY_SPLIT_WITH_TASKS

    root = tmp_path / "sample"
    MEDSDataset.from_yaml(SIMPLE_STATIC_SHARDED_BY_SPLIT_WITH_TASKS).write(root)
    code_map = tmp_path / "codes.yaml"
    code_map.write_text(yaml.safe_dump({
        "stays": {"admission": ["ADMISSION//*"], "discharge": ["DISCHARGE"]},
        "modalities": {"demographics": {"kind": "static", "codes": ["EYE_COLOR//*", "HEIGHT"]},
                       "vitals": {"kind": "values", "codes": ["HR", "TEMP"]}}}))
    # 18:00 is 0.3025 h after the first subject's admission (17:41:51); no other subject has a label then
    config = MedsConfig(codes=str(code_map), splits="meds", labels={"mortality": str(root / "task_labels")})
    cohort = meds_reader.build(root, config, {"mortality": 0.3025, "los": 12.0})
    stays = cohort.stays.set_index("patient_id")
    assert len(stays) == 6 and stays["given_split"].value_counts().to_dict() == {"train": 4, "val": 1, "test": 1}
    assert stays.loc["239684", "unit_hours"] == pytest.approx((19 * 3600 + 27 * 60 + 19 - 17 * 3600 - 41 * 60 - 51) / 3600)
    assert stays.loc["239684", "died"] == 0.0 and stays["died"].isna().sum() == 5
    assert cohort.reading["labels"]["mortality"] == {
        "rows": 21, "rows at a stay's prediction time": 1, "rows at no stay's prediction time": 20,
        "further rows for a stay (first kept)": 0, "stays without a label": 5, "rows without a value": 0}
    vitals = cohort.events["vitals"]
    first = vitals[vitals["stay_id"] == stays.loc["239684", "stay_id"]]
    assert first["name"].tolist()[:4] == ["HR", "TEMP", "HR", "TEMP"] and first["value"].tolist()[:2] == pytest.approx([102.6, 96.0])
    demographics = cohort.static["demographics"].set_index("stay_id").loc[stays.loc["239684", "stay_id"]]
    assert demographics["EYE_COLOR"] == "BROWN" and demographics["HEIGHT"] == pytest.approx(175.271115, abs=1e-4)
    assert demographics["age"] == pytest.approx((pd.Timestamp("2010-05-11 17:41:51") - pd.Timestamp("1980-12-28")).days
                                                / 365.25, abs=0.01)


def test_a_generated_meds_testing_helpers_dataset_without_stays_fails_naming_the_patterns(tmp_path):
    """meds-testing-helpers' generator (its `build_sample_MEDS_dataset` config, in process) writes
    valid MEDS with no visit structure: it validates, and then no stay can be found."""
    import warnings

    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from meds_testing_helpers.dataset_generator import GEN_YAML

    with initialize_config_dir(str(GEN_YAML.parent), version_base=None):
        spec = compose(GEN_YAML.stem, overrides=["dataset_spec/data_generator=sample"]).dataset_spec
    with warnings.catch_warnings():  # its date parsing warns about time zones
        warnings.simplefilter("ignore", UserWarning)
        instantiate(spec).sample(40, np.random.default_rng(1)).write(tmp_path)
    assert len(meds_reader.MedsFolder(tmp_path).data_files) >= 2  # every shard passes meds.DataSchema
    with pytest.raises(MedsFormatError, match=r"no stays: no \['ICU_ADMISSION', 'ICU_ADMISSION//\*'\] code"):
        meds_reader.build(tmp_path, MedsConfig(), WINDOWS)


# --- bad input --------------------------------------------------------------------------------


def test_a_folder_that_is_not_meds_fails_naming_it(tmp_path):
    (tmp_path / "hosp").mkdir()
    with pytest.raises(MedsFormatError, match=r"is not a MEDS dataset: no data/\*\*/\*\.parquet"):
        meds_reader.build(tmp_path, MedsConfig(), WINDOWS)


def test_a_data_file_without_subject_id_fails_naming_file_and_field(small, tmp_path):
    root = write_meds(small, tmp_path / "m")
    table = pq.read_table(root / "data" / "1.parquet").drop_columns(["subject_id"])
    pq.write_table(table, root / "data" / "1.parquet")
    with pytest.raises(MedsFormatError, match=r"data/1\.parquet: does not conform to meds\.DataSchema: "
                                              r"Missing required columns: subject_id"):
        meds_reader.build(root, MedsConfig(), WINDOWS)


def test_a_mistyped_field_fails_naming_it(small, tmp_path):
    root = write_meds(small, tmp_path / "m")
    table = pq.read_table(root / "data" / "0.parquet")
    pq.write_table(table.set_column(1, "time", table["time"].cast(pa.timestamp("ns"))), root / "data" / "0.parquet")
    with pytest.raises(MedsFormatError, match=r"data/0\.parquet: .*time \(want timestamp\[us\], got timestamp\[ns\]\)"):
        meds_reader.build(root, MedsConfig(), WINDOWS)


def test_unsorted_times_fail_naming_file_field_and_row(small, tmp_path):
    root = write_meds(small, tmp_path / "m", shards=1)
    table = pq.read_table(root / "data" / "0.parquet")
    time = table["time"].to_numpy().copy()
    timed = np.flatnonzero(~np.isnat(time))
    later = timed[np.flatnonzero(np.diff(time[timed]) > np.timedelta64(0))[0] + 1]  # a row later than the one before
    rows = np.array([timed[np.searchsorted(timed, later) - 1], later])
    time[rows] = time[rows[::-1]]  # swap them: the subject's times now go back
    pq.write_table(table.set_column(1, "time", pa.array(time, pa.timestamp("us"))), root / "data" / "0.parquet")
    with pytest.raises(MedsFormatError, match=rf"data/0\.parquet: field time is not sorted within subject_id at row "
                                              rf"{rows[1]}"):
        meds_reader.build(root, MedsConfig(), WINDOWS)


def test_a_subject_in_two_files_fails(small, tmp_path):
    root = write_meds(small, tmp_path / "m", shards=2)
    first = pq.read_table(root / "data" / "0.parquet")
    one = first.filter(pa.compute.equal(first["subject_id"], first["subject_id"][0]))
    second = pq.read_table(root / "data" / "1.parquet")
    pq.write_table(pa.concat_tables([second, one]), root / "data" / "1.parquet")
    with pytest.raises(MedsFormatError, match=r"data/1\.parquet: the subject_id at row \d+ appeared in data/0\.parquet"):
        meds_reader.build(root, MedsConfig(), WINDOWS)


def test_codes_missing_from_codes_parquet_are_counted(small, tmp_path):
    root = write_meds(small, tmp_path / "m")
    codes = pq.read_table(root / meds.code_metadata_filepath)
    kept = codes.filter(pa.compute.invert(pa.compute.is_in(codes["code"], pa.array(["LAB//50813//mmol/L", "MEDS_BIRTH"]))))
    pq.write_table(kept, root / meds.code_metadata_filepath)
    reading = meds_reader.build(root, MedsConfig(), WINDOWS).reading
    rows = int(small["code"].isin(["LAB//50813//mmol/L", "MEDS_BIRTH"]).sum())
    assert reading["codes_missing_from_metadata"] == {"codes": 2, "rows": rows}


def test_bad_metadata_fails_naming_the_file_and_field(small, tmp_path):
    root = write_meds(small, tmp_path / "m", metadata={"dataset_name": 7})
    with pytest.raises(MedsFormatError, match=r"metadata/dataset\.json: field dataset_name does not conform"):
        meds_reader.build(root, MedsConfig(), WINDOWS)
    root = write_meds(small, tmp_path / "n", splits=None)
    with pytest.raises(MedsFormatError, match=r"splits: meds needs metadata/subject_splits\.parquet"):
        meds_reader.build(root, MedsConfig(splits="meds"), WINDOWS)


def test_unpaired_stay_codes_make_no_stay_and_are_counted(small, tmp_path):
    first = small["subject_id"].iloc[0]
    dropped = small[~((small["subject_id"] == first) & small["code"].str.startswith("ICU_DISCHARGE"))]
    reading = meds_reader.build(write_meds(dropped, tmp_path / "m"), MedsConfig(), WINDOWS)
    assert len(reading.stays) == 29
    assert reading.reading["stays"]["stays: admission codes without a discharge"] == 1


# --- the code map -------------------------------------------------------------------------------


def test_presets_load_and_a_bad_code_map_names_file_and_key(tmp_path):
    assert list(load_code_map("mimic_iv").modalities) == ["demographics", "lab", "medication", "diagnosis",
                                                          "treatment", "discharge_note", "radiology_note"]
    assert load_code_map("eicu").death == ["HOSPITAL_DISCHARGE//Expired", "HOSPITAL_DISCHARGE//Expired//*"]
    bad = tmp_path / "codes.yaml"
    bad.write_text(yaml.safe_dump({"stays": {"admission": ["A"], "discharge": ["B"]},
                                   "modalities": {"lab": {"kind": "vectors", "codes": ["LAB//*"]}}}))
    with pytest.raises(ConfigError, match=r"codes\.yaml: key 'modalities\.lab\.kind': 'vectors' is not one of"):
        load_code_map(bad)
    with pytest.raises(ConfigError, match="nor a shipped preset: mimic_iv, eicu"):
        load_code_map("hirid")


def test_structural_codes_are_never_inputs_even_when_a_modality_pattern_matches(small, tmp_path):
    code_map = load_code_map("mimic_iv")
    code_map.modalities["medication"].codes.append("*")  # everything left over
    path = tmp_path / "codes.yaml"
    from clintraj.config import to_dict
    path.write_text(yaml.safe_dump(to_dict(code_map)))
    cohort = meds_reader.build(write_meds(small, tmp_path / "m"), MedsConfig(codes=str(path)), WINDOWS)
    names = set(cohort.events["medication"]["name"])
    assert "MEDICATION//START//Norepinephrine" in names and "DIAGNOSIS//ICD//10//A419" not in names  # diagnosis first
    assert not {n for n in names if n.startswith(("HOSPITAL_", "ICU_", "MEDS_"))}
    assert cohort.reading["row_fates"]["code maps to no modality"] == 0


def test_row_groups_of_subjects_without_a_stay_are_skipped_and_counted(tmp_path):
    icu = synthetic_icu(subjects=40, seed=2)
    # subjects with no stay, sorting after the cohort's: whole row groups of them
    others = icu[icu["code"].str.startswith(("LAB//", "GENDER//"))].assign(subject_id=lambda f: f["subject_id"] + 10**9)
    root = write_meds(pd.concat([icu, others]), tmp_path / "m", shards=1, row_group_size=500)
    from clintraj.data.meds import codes, events, stays
    folder = meds_reader.MedsFolder(root)
    router = codes.CodeRouter(load_code_map("mimic_iv"))
    found, _ = stays.find_stays(stays.boundary_events(folder, router, 4096)[0], router, True)
    reading = events.read_events(folder, router, ["static", "values", "terms", "terms", "terms", "text", "text"],
                                 events.Spans(found, 0.0), 1000)
    groups = pq.ParquetFile(root / "data" / "0.parquet").metadata.num_row_groups
    assert reading.fates[events.NO_STAY] == len(others) and reading.rows == len(icu) + len(others)
    assert reading.code_rows.sum() < reading.rows  # some row groups were never read
    assert groups > 10


def test_unmapped_codes_are_counted_by_prefix_the_many_summed(small, tmp_path):
    from clintraj.data.meds.report import KEPT_PREFIXES, OTHER, render_reading

    lab = small[small["code"] == "LAB//50813//mmol/L"].iloc[:150]
    odd = lab.assign(code=[f"OMR{i}//x" for i in range(150)])  # 150 prefixes of one row each
    cohort = meds_reader.build(write_meds(pd.concat([small, odd]), tmp_path / "m"), MedsConfig(), WINDOWS)
    unmapped = cohort.reading["unmapped_codes"]
    assert unmapped == {"codes": 150, "rows": 150, "by_prefix": unmapped["by_prefix"]}
    assert len(unmapped["by_prefix"]) == KEPT_PREFIXES + 1 and unmapped["by_prefix"][OTHER] == {"codes": 50, "rows": 50}
    assert f"| {OTHER} | 130 | 130 |" in render_reading(cohort.reading)  # report.md lists 20
