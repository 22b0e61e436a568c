"""A local Ray started by a job gets the one-machine settings before it starts; a cluster's does not."""

import os
import shutil
from pathlib import Path

import pytest

from clintraj import runtime


@pytest.fixture
def fake_ray(monkeypatch):
    """ray.init replaced by a recorder of the environment it was started with."""
    import ray

    started = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.append((kwargs, dict(os.environ))))
    monkeypatch.setattr(runtime, "coordinator_on_head", lambda: started.append("coordinator on the head"))
    for key in runtime.LOCAL_RAY_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return started


def test_a_local_ray_starts_with_the_one_machine_settings_and_a_users_own_win(fake_ray, monkeypatch):
    monkeypatch.setenv("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "3")
    runtime.init_ray(num_cpus=4)
    (kwargs, env), = fake_ray
    assert kwargs["num_cpus"] == 4
    assert kwargs["address"] == "local"  # its own Ray, never one that `ray start` left on this machine
    assert env["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] == "3"  # set by the user before: kept
    assert env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0" and env["RAY_enable_worker_prestart"] == "0"


def test_a_cluster_keeps_its_own_settings(fake_ray):
    runtime.init_ray("ray://head:10001")
    (kwargs, env), coordinator = fake_ray  # then Ray's AutoscalingCoordinator is started on the head
    assert kwargs["address"] == "ray://head:10001" and coordinator == "coordinator on the head"
    assert not set(runtime.LOCAL_RAY_ENV) & set(env)


# slow: tests/conftest.py marks every test that uses ray_local
def test_ray_workers_see_the_one_machine_settings(ray_local):
    import ray

    @ray.remote(num_cpus=0)
    def environment() -> dict:
        return {key: os.environ.get(key) for key in runtime.LOCAL_RAY_ENV}

    seen = ray.get(environment.remote())
    expected = {key: os.environ.get(key, value) for key, value in runtime.LOCAL_RAY_ENV.items()}
    assert seen == expected and seen["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"


@pytest.mark.slow
@pytest.mark.parametrize("short", [True, False])
def test_a_local_rays_session_logs_stay_in_the_work_folder(tmp_path, short):
    """Worker output (which may hold clinical data) lands in the job's work folder, whether or not
    the folder's path is short enough for Ray's sockets; nothing is left in /tmp."""
    import subprocess
    import sys
    import tempfile
    import textwrap

    workdir = Path(tempfile.mkdtemp(prefix="w", dir="/tmp")) if short else tmp_path / ("long-" * 12) / "work"
    before = set(Path(tempfile.gettempdir()).glob("clintraj-ray-*"))
    script = textwrap.dedent(f"""
        import ray
        from clintraj.runtime import init_ray, shutdown_ray
        init_ray(num_cpus=2, workdir={str(workdir)!r})
        @ray.remote
        def shout():
            print("canary-4711 from a worker")
        ray.get(shout.remote())
        shutdown_ray()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    found = [p for p in workdir.rglob("worker-*.out") if "canary-4711" in p.read_text(errors="replace")]
    assert len(found) == 1, "the worker's output is not in the work folder"
    assert found[0].relative_to(workdir).parts[0] == ("ray" if short else "logs")
    # no private folder of this job left behind (other jobs on the machine may hold their own)
    owners = [p / "clintraj-owner.json" for p in set(Path(tempfile.gettempdir()).glob("clintraj-ray-*")) - before]
    assert [o for o in owners if o.is_file() and str(workdir) in o.read_text()] == []
    if short:
        shutil.rmtree(workdir)
def test_our_warnings_are_errors_and_the_libraries_own_are_not():
    """pyproject.toml's filters and clintraj.runtime.STRICT_LOG_LINES, in the test process."""
    import logging
    import warnings

    with pytest.raises(UserWarning, match="probe"):  # any warning raised from one of our modules
        warnings.warn_explicit("probe", UserWarning, "probe.py", 1, module="clintraj.data.probe")
    with pytest.raises(DeprecationWarning, match="iter_torch_batches"):  # a deprecation we once triggered
        warnings.warn_explicit("Passing a function to `iter_torch_batches(collate_fn)` is deprecated in Ray 2.47.",
                               DeprecationWarning, "iterator.py", 577, module="ray.data.iterator")
    with pytest.raises(DeprecationWarning, match="concurrency"):  # one a library logs instead
        logging.getLogger("ray.data._internal.util").warning(
            "The argument ``concurrency`` is deprecated in Ray 2.51. Please specify argument ``compute`` instead.")
    with warnings.catch_warnings(record=True) as seen:  # Ray Train's own, about its internals: not ours
        warnings.warn_explicit("`ExecutionOptions.exclude_resources` is deprecated", DeprecationWarning,
                               "execution_options.py", 436, module="ray.data._internal.execution.interfaces")
    assert seen == []  # ignored by the filters (catch_warnings keeps them), not raised


# slow: tests/conftest.py marks every test that uses ray_local
def test_our_warnings_are_errors_in_ray_workers_too(ray_local):
    import ray

    @ray.remote(num_cpus=0)
    def warn(module: str) -> str:
        import warnings

        warnings.warn_explicit("probe", UserWarning, "probe.py", 1, module=module)
        return "warned"

    assert ray.get(warn.remote("some_library")) == "warned"  # not ours: printed, not raised
    with pytest.raises(ray.exceptions.RayTaskError, match="probe"):
        ray.get(warn.remote("clintraj.training.probe"))


# slow: tests/conftest.py marks every test that uses ray_local
def test_a_failing_ray_task_is_raised_once_the_others_have_ended(ray_local, tmp_path):
    """The readers of eICU's tables write into one scratch folder that their caller removes when
    one fails: a sibling still writing there made the removal fail (`Directory not empty`). The
    error comes once the sibling has finished (waited for: cancelling it can crash Ray's driver)."""
    import time

    def fail_soon():
        time.sleep(0.5)
        raise ValueError("this reader failed")

    def write_on(folder):
        for step in range(60):  # 3 s
            (folder / f"{step}.part").touch()
            time.sleep(0.05)
        (folder / "finished").touch()

    with pytest.raises(ValueError, match="this reader failed"):
        runtime.run_each([lambda: write_on(tmp_path), fail_soon])
    assert (tmp_path / "finished").exists()  # the sibling had ended when the error came
