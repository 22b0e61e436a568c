"""Inputs and run storage at URIs: staging in, Ray storage paths, and a job that takes a URI.

Offline: file:// URIs through pyarrow's local filesystem, and (when moto is installed, as the
`test` extra does) a real S3 API served by moto on loopback, read by pyarrow's S3 client.
"""

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from pyarrow import fs as pafs

from clintraj import storage
from clintraj.artifacts.dataset import FORMAT as DATASET_FORMAT
from clintraj.storage import StorageError, is_uri, join, stage_in, storage_path

REPO = Path(__file__).resolve().parents[1]


def _source(root: Path) -> Path:
    """A small raw-like folder: nested files, binary content, an empty file."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "patient.csv").write_text("patientunitstayid,age\n1,70\n")
    (root / "sub" / "deeper" / "lab.bin").write_bytes(os.urandom(200_000))
    (root / "sub" / "empty.txt").write_bytes(b"")
    return root


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def copies(monkeypatch):
    """Counts the copies pyarrow makes for stage_in."""
    calls = []
    real = pafs.copy_files

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(storage.pafs, "copy_files", counting)
    return calls


@pytest.mark.parametrize("location, expected", [
    ("s3://bucket/eicu-crd/2.0", True), ("gs://b/x", True), ("abfs://c@acct.dfs.core.windows.net/p", True),
    ("file:///tmp/x", True), ("/data/eicu", False), ("data/eicu-v1", False), ("C:\\data", False),
    (Path("s3:/x"), False), ("s3:/x", False)])
def test_is_uri(location, expected):
    assert is_uri(location) is expected


def test_storage_path_keeps_uris_and_resolves_local_paths(tmp_path, monkeypatch):
    assert storage_path("s3://bucket/clintraj") == "s3://bucket/clintraj"
    assert storage_path("gs://b/runs?endpoint_override=x") == "gs://b/runs?endpoint_override=x"
    monkeypatch.chdir(tmp_path)
    assert storage_path("clintraj-work/ray_results") == str(tmp_path / "clintraj-work" / "ray_results")
    assert storage_path(Path("runs")) == str(tmp_path / "runs")
    assert os.path.isabs(storage_path("~/runs"))


def test_join_and_stage_root(tmp_path):
    assert join("s3://b/root/", "sequential", "tune") == "s3://b/root/sequential/tune"
    assert join("s3://b/root?endpoint_override=h:9", "tune") == "s3://b/root/tune?endpoint_override=h:9"
    assert join(tmp_path, "tune") == tmp_path / "tune"
    assert storage.stage_root("s3://b/clintraj", "pretrain", tmp_path) == "s3://b/clintraj/pretrain"
    assert storage.stage_root(None, "pretrain", tmp_path / "pretrain") == tmp_path / "pretrain"


def test_redact_drops_keys_from_uris():
    assert storage.redact("s3://KEY:SECRET@bucket/eicu?secret_key=S") == "s3://bucket/eicu"
    assert storage.redact("/local/path") == "/local/path"


def test_local_path_is_returned_resolved_without_copying(tmp_path, copies, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _source(tmp_path / "raw")
    assert stage_in("raw", tmp_path / "cache") == tmp_path / "raw"
    assert not copies and not (tmp_path / "cache").exists()


def test_stage_in_copies_a_uri_once_with_identical_bytes(tmp_path, copies):
    source = _source(tmp_path / "eicu-crd")
    uri = source.as_uri()
    staged = stage_in(uri, tmp_path / "cache")
    assert staged.parent == tmp_path / "cache" and staged.name.startswith("eicu-crd-")
    assert _digests(staged) == _digests(source)
    assert len(copies) == 1
    (source / "patient.csv").write_text("changed after staging\n")
    assert stage_in(uri, tmp_path / "cache") == staged
    assert len(copies) == 1, "a second stage_in copied again"
    assert (staged / "patient.csv").read_text().startswith("patientunitstayid")


def test_stage_in_a_single_file(tmp_path):
    source = _source(tmp_path / "raw") / "patient.csv"
    staged = stage_in(source.as_uri(), tmp_path / "cache")
    assert staged.name == "patient.csv" and staged.read_bytes() == source.read_bytes()


def test_an_interrupted_copy_is_not_reused(tmp_path, copies):
    source = _source(tmp_path / "eicu-crd")
    uri = source.as_uri()
    target = storage.cache_folder(uri, tmp_path / "cache")
    partial = target.with_name(target.name + ".partial-deadbeef")  # what a killed copy leaves behind
    (partial / "sub").mkdir(parents=True)
    (partial / "patient.csv").write_text("patientunit")
    staged = stage_in(uri, tmp_path / "cache")
    assert staged == target and len(copies) == 1
    assert _digests(staged) == _digests(source)
    assert not partial.exists()


def test_a_failed_copy_leaves_nothing_to_reuse(tmp_path, monkeypatch):
    source = _source(tmp_path / "eicu-crd")

    def broken(*args, **kwargs):
        raise OSError("connection reset")

    monkeypatch.setattr(storage.pafs, "copy_files", broken)
    with pytest.raises(StorageError, match="cannot copy file://"):
        stage_in(source.as_uri(), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_uri_fails_naming_it_without_secrets(tmp_path):
    with pytest.raises(StorageError) as error:
        stage_in((tmp_path / "nowhere").as_uri(), tmp_path / "cache")
    assert "nothing at file://" in str(error.value) and "credentials" in str(error.value)
    with pytest.raises(StorageError) as error:
        stage_in("s3://AKIAEXAMPLE:TOPSECRET@bucket/eicu?no_such_option=1", tmp_path / "cache")
    message = str(error.value)
    assert "s3://bucket/eicu" in message and "AWS_ENDPOINT_URL" in message
    assert "TOPSECRET" not in message and "AKIAEXAMPLE" not in message


def test_markers_and_checkpoint_listing_through_uris(tmp_path):
    from clintraj.training.pretrain import best_saved_checkpoint

    root = (tmp_path / "runs").as_uri()
    assert storage.read_text(join(root, "tune", "s.parent_run")) is None
    storage.write_text(join(root, "tune", "s.parent_run"), "abc123")
    assert storage.read_text(join(root, "tune", "s.parent_run")) == "abc123"
    for name, loss in (("checkpoint_000000", 0.9), ("checkpoint_000001", 0.4)):
        storage.write_text(join(root, "trial-1", name, "state.json"), f'{{"val_loss": {loss}, "epoch": 1}}')
    storage.write_text(join(root, "trial-1", "checkpoint_tmp", "other.txt"), "no state")
    best = best_saved_checkpoint(join(root, "trial-1"))
    assert best["val_loss"] == 0.4 and best["checkpoint"] == join(root, "trial-1", "checkpoint_000001")
    assert best_saved_checkpoint(join(root, "absent")) is None


def test_uri_of_names_checkpoints_others_can_open(tmp_path):
    filesystem, path = pafs.FileSystem.from_uri(tmp_path.as_uri())
    assert storage.uri_of(filesystem, path) == str(tmp_path)
    with pytest.raises(StorageError, match="subtree"):
        storage.uri_of(pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "x")


# --- a real S3 API: moto on loopback, pyarrow's S3 client --------------------------------------

@pytest.fixture
def s3(monkeypatch):
    """A bucket on a moto S3 server bound to 127.0.0.1; pyarrow finds it through AWS_ENDPOINT_URL."""
    server_module = pytest.importorskip("moto.server", reason="moto (the test extra) is not installed")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
        monkeypatch.setenv(key, value)
    client = pafs.S3FileSystem(endpoint_override=f"{host}:{port}", scheme="http", access_key="testing",
                               secret_key="testing", region="us-east-1", allow_bucket_creation=True)
    client.create_dir("clintraj-test")
    yield client
    server.stop()


def test_stage_in_from_s3(tmp_path, s3, copies):
    source = _source(tmp_path / "eicu-crd")
    pafs.copy_files(str(source), "clintraj-test/eicu-crd/2.0", destination_filesystem=s3)
    copies.clear()  # the upload above is not staging
    staged = stage_in("s3://clintraj-test/eicu-crd/2.0", tmp_path / "cache")
    assert staged.name.startswith("2.0-")
    # object stores hold no empty folders, but every file, empty ones included, arrives intact
    assert _digests(staged) == _digests(source)
    assert stage_in("s3://clintraj-test/eicu-crd/2.0", tmp_path / "cache") == staged and len(copies) == 1
    storage.write_text("s3://clintraj-test/clintraj/sequential/tune/s.parent_run", "run-1")
    assert storage.read_text("s3://clintraj-test/clintraj/sequential/tune/s.parent_run") == "run-1"
    assert storage.list_dirs("s3://clintraj-test/eicu-crd/2.0") == ["s3://clintraj-test/eicu-crd/2.0/sub"]
    filesystem, path = pafs.FileSystem.from_uri("s3://clintraj-test/eicu-crd/2.0")
    assert storage.uri_of(filesystem, path) == "s3://clintraj-test/eicu-crd/2.0"
    with pytest.raises(StorageError, match="nothing at s3://clintraj-test/absent"):
        stage_in("s3://clintraj-test/absent", tmp_path / "cache")


# --- a job's flags -------------------------------------------------------------------------------

def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sweep_backbones_takes_data_and_storage_uris(tmp_path, monkeypatch):
    """The issue's command, `sweep_backbones.py --data s3://...`, down to the library call (not run)."""
    job = _job("sweep_backbones")
    dataset = _source(tmp_path / "eicu-v1")
    # what jobs/preprocess.py writes
    (dataset / "report.json").write_text(json.dumps({"dataset": "eicu", "format": DATASET_FORMAT}))
    called = {}

    def run(config, workdir, tracking, **kwargs):
        called.update(kwargs, workdir=workdir, datasets=config.datasets)
        raise SystemExit(0)  # stop before the pipeline and the printing

    monkeypatch.setattr(job, "run", run)
    monkeypatch.setattr("clintraj.console.setup", lambda workdir, job, verbose=False: Path(workdir) / "job.log")
    monkeypatch.setattr("clintraj.runtime.init_ray", lambda address, workdir=None: None)
    monkeypatch.setattr("clintraj.runtime.shutdown_ray", lambda: None)
    monkeypatch.setattr("clintraj.tracking.Tracking.resolve", staticmethod(lambda uri, folder: None))
    monkeypatch.setenv("CLINTRAJ_STORAGE", "s3://bucket/clintraj")
    monkeypatch.setattr(sys, "argv", ["sweep_backbones.py", "--data", dataset.as_uri(),
                                      "--workdir", str(tmp_path / "work")])
    with pytest.raises(SystemExit):
        job.main()
    assert called["storage"] == "s3://bucket/clintraj" and called["raw"] is None
    assert called["datasets"] == ["eicu"]  # the prepared dataset's, not the default's two
    staged = called["dataset"]
    assert staged.parent == tmp_path / "work" / "staged" and _digests(staged) == _digests(dataset)


def test_sweep_backbones_refuses_raw_and_data_together(tmp_path, monkeypatch, capsys):
    job = _job("sweep_backbones")
    monkeypatch.setattr(sys, "argv", ["sweep_backbones.py", "--raw", "s3://b/eicu-crd/2.0", "--data", "s3://b/v1"])
    with pytest.raises(SystemExit) as exit_:
        job.main()
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_shared_run_arguments_default_storage_to_the_environment(monkeypatch, tmp_path):
    import argparse

    from clintraj.cli import add_dataset_arguments, add_run_arguments

    for env, expected in (("s3://b/c", "s3://b/c"), ("", None)):
        monkeypatch.setenv("CLINTRAJ_STORAGE", env)
        parser = argparse.ArgumentParser()
        add_dataset_arguments(parser)
        add_run_arguments(parser, experiment="exp")
        args = parser.parse_args(["--dataset", "eicu", "--data", "gs://b/eicu-v1"])
        assert args.storage == expected and args.data == "gs://b/eicu-v1"
    args = parser.parse_args(["--dataset", "eicu", "--data", "data/eicu-v1", "--storage", str(tmp_path)])
    assert args.data == Path("data/eicu-v1") and args.storage == str(tmp_path)
