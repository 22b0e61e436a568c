import gzip
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"
EICU_DEMO = SHARED_DATA / "eicu-demo-2.0.1"
MIMIC_DEMO = SHARED_DATA / "mimic-iv-demo-2.2"

os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
# Our warnings are errors: in this process through pyproject.toml's filterwarnings (and the library
# log lines of clintraj.runtime.STRICT_LOG_LINES, below), in every Ray worker and job the tests
# start through this variable (clintraj.runtime.init_ray installs the same filters there).
os.environ.setdefault("CLINTRAJ_STRICT_WARNINGS", "1")


def pytest_configure(config):
    from clintraj.runtime import strict_warnings

    strict_warnings()  # pytest resets the warning filters around each test; the log handlers stay


# Fixtures that start Ray: ray_local (the session's local Ray, below) and ray_head (a head
# started with `ray start` in tests/test_end_to_end.py).
RAY_FIXTURES = frozenset({"ray_local", "ray_head"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the marker must be there when it does
def pytest_collection_modifyitems(config, items):
    """A test that starts Ray is slow: marked so here, whether it asks for a Ray fixture itself or
    through another fixture (item.fixturenames is the whole closure)."""
    for item in items:
        if RAY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # Tests that start a Ray of their own run first, before the session's Ray (ray_local) starts:
    # beside a session Ray that most of the suite had used, the main job on a Ray head took 233 s
    # in the suite against 202 s alone (2026-12-06).
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is None)


@pytest.fixture(autouse=True)
def _tracking_uri_stays_in_its_test():
    """mlflow.set_tracking_uri also sets $MLFLOW_TRACKING_URI for child processes; a job run in a
    test must not hand its store to the next test (or to a Ray head that test starts)."""
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real demo data not found at {path} (the shared PhysioNet demo folder is absent)")
    return path


@pytest.fixture(scope="session")
def eicu_demo_raw(tmp_path_factory) -> Path:
    """The eICU demo as a raw folder: official files linked, lab from the labelled 169-stay substitute."""
    require(EICU_DEMO)
    raw = tmp_path_factory.mktemp("eicu-demo-raw")
    for name in ("patient", "diagnosis", "treatment", "medication", "apacheApsVar"):
        (raw / f"{name}.csv.gz").symlink_to((EICU_DEMO / f"{name}.csv.gz").resolve())
    substitute = require(EICU_DEMO / "_partial_substitutes" / "lab.pyhealth_100patient_subset.csv")
    with open(substitute, "rb") as source, gzip.open(raw / "lab.csv.gz", "wb") as target:
        shutil.copyfileobj(source, target)
    return raw


@pytest.fixture(scope="session")
def mimic_demo_raw(tmp_path_factory) -> Path:
    """The MIMIC-IV demo (hosp, icu) with the chartevents stand-in as icu/chartevents.csv.gz
    (PROVENANCE.md: the official file could not be obtained)."""
    stand_in = require(MIMIC_DEMO / "_derived" / "chartevents_numeric_from_meds.csv.gz")
    raw = tmp_path_factory.mktemp("mimic-demo-raw")
    for folder in ("hosp", "icu"):
        (raw / folder).mkdir()
        for file in (MIMIC_DEMO / folder).glob("*.csv.gz"):
            (raw / folder / file.name).symlink_to(file.resolve())
    (raw / "icu" / "chartevents.csv.gz").symlink_to(stand_in.resolve())
    return raw


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (starting Ray costs seconds)."""
    from clintraj.runtime import init_ray, shutdown_ray

    init_ray(num_cpus=4)
    yield
    shutdown_ray()


@pytest.fixture
def torch_one_thread():
    """Tiny tensors: intra-op threads only add overhead (and stall badly on a loaded machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def canary_run(tmp_path_factory):
    """The main job on synthetic raw MIMIC-IV with notes, CXR and canaries planted (tests/canary_run.py),
    run once: scanned by tests/test_canaries.py, its pretraining read by tests/test_pretrain_ray.py."""
    from canary_run import run_canaries

    return run_canaries(tmp_path_factory.mktemp("canaries"))
