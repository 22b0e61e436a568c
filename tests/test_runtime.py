"""A local Ray started by a job gets the one-machine settings before it starts; a cluster's does not."""

import os

import pytest

from clintraj import runtime


@pytest.fixture
def fake_ray(monkeypatch):
    """ray.init replaced by a recorder of the environment it was started with."""
    import ray

    started = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.append((kwargs, dict(os.environ))))
    for key in runtime.LOCAL_RAY_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return started


def test_a_local_ray_starts_with_the_one_machine_settings_and_a_users_own_win(fake_ray, monkeypatch):
    monkeypatch.setenv("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "3")
    runtime.init_ray(num_cpus=4)
    (kwargs, env), = fake_ray
    assert kwargs["num_cpus"] == 4
    assert env["RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"] == "3"  # set by the user before: kept
    assert env["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0" and env["RAY_enable_worker_prestart"] == "0"


def test_a_cluster_keeps_its_own_settings(fake_ray):
    runtime.init_ray("ray://head:10001")
    (kwargs, env), = fake_ray
    assert kwargs["address"] == "ray://head:10001"
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
