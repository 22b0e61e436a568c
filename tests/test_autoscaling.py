"""Autoscaling, simulated on one machine: deploy/ray-cluster.yaml's node types on Ray's fake
multi-node provider (`fake_multinode`: each "node" a raylet on this machine, launched and
removed by the real autoscaler). A sweep of GPU trials starts from zero workers; the autoscaler
adds nodes for the pending trials up to max_workers, each trial's worker holds one GPU, and the
nodes go away once idle for idle_timeout_minutes.

`ray.cluster_utils.AutoscalingCluster` is not used: its start and shutdown run `ray stop --force`,
which stops every Ray on the machine, and its base config (fake_multi_node/example.yaml) is not
in the Ray wheel. The head is started here the way it starts, in a process group of its own.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
FAKE_HEAD = "ray.head.default"  # the fake provider's name for the head's node type
CPUS_PER_GPU_NODE_CPU = 8  # CPUs shrink 8x (g5.2xlarge: 8 -> 1; g5.12xlarge: 48 -> 6): logical only
MAX_WORKERS = 2  # per type and in all: what this 2-core machine runs as "nodes"
IDLE_MINUTES = 0.1  # the YAML's 10 minutes, shortened


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fake_cluster_config(deployed: dict, gcs_port: int) -> dict:
    """deploy/ray-cluster.yaml's node types for the fake provider. The mapping: the head type
    (head_cpu) becomes the fake head with the same resources (CPU 0); each worker type keeps its
    name, min_workers and GPUs (a count on a fake node: Ray schedules on it, no device behind it),
    its CPUs shrink 8x, its max_workers and the cluster's are capped at MAX_WORKERS, and each node
    gets a 100 MiB object store; idle_timeout_minutes shrinks to IDLE_MINUTES, upscaling_speed
    stays. AWS's node_config, file mounts and setup commands have no meaning here."""
    types = {FAKE_HEAD: {"resources": deployed["available_node_types"][deployed["head_node_type"]]["resources"],
                         "node_config": {}, "max_workers": 0}}
    for name, node in deployed["available_node_types"].items():
        if name == deployed["head_node_type"]:
            continue
        resources = {"CPU": node["resources"]["CPU"] // CPUS_PER_GPU_NODE_CPU, "GPU": node["resources"]["GPU"],
                     "object_store_memory": 100 * 2**20}
        types[name] = {"resources": resources, "node_config": {}, "min_workers": node["min_workers"],
                       "max_workers": min(node["max_workers"], MAX_WORKERS)}
    return {
        "cluster_name": "fake-" + deployed["cluster_name"], "max_workers": min(deployed["max_workers"], MAX_WORKERS),
        "upscaling_speed": deployed["upscaling_speed"], "idle_timeout_minutes": IDLE_MINUTES,
        "provider": {"type": "fake_multinode", "gcs_address": f"127.0.0.1:{gcs_port}", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": types, "head_node_type": FAKE_HEAD, "auth": {"ssh_user": "ubuntu"},
        "docker": {}, "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@pytest.fixture
def fake_cluster(tmp_path):
    """A head with the autoscaler over the fake provider, in its own process group (its worker
    "nodes" too), stopped by signalling that group."""
    port = free_port()
    deployed = yaml.safe_load((REPO / "deploy" / "ray-cluster.yaml").read_text())
    config = fake_cluster_config(deployed, port)
    (tmp_path / "cluster.json").write_text(json.dumps(config))
    temp = tempfile.mkdtemp(prefix="ray-fake-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_AUTH_MODE": "disabled",
           "RAY_ADDRESS": ""}
    command = [RAY, "start", "--head", "--block", f"--autoscaling-config={tmp_path / 'cluster.json'}",
               f"--port={port}", "--node-ip-address=127.0.0.1", f"--temp-dir={temp}", "--include-dashboard=false",
               "--num-cpus=0", "--object-store-memory=100000000",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}"]
    with open(tmp_path / "head.log", "w") as log:
        head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield f"127.0.0.1:{port}", config, env
        finally:
            stop_group(head)
    shutil.rmtree(temp, ignore_errors=True)


def stop_group(head: subprocess.Popen) -> None:
    """SIGTERM to the head's process group, SIGKILL to what is left of it after 5 s."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + grace
        while time.time() < deadline:
            if subprocess.run(["pgrep", "-g", str(head.pid)], capture_output=True, check=False).returncode:
                head.wait()
                return
            time.sleep(0.5)
    head.wait(timeout=5)


@pytest.mark.slow
@pytest.mark.own_ray
def test_a_gpu_sweep_scales_out_from_zero_up_to_max_workers_and_back(fake_cluster, tmp_path):
    address, config, env = fake_cluster
    trials = 3
    done = subprocess.run([sys.executable, "tests/fake_sweep.py", address, str(tmp_path / "storage"), str(trials)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-5000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    print({k: seen[k] for k in ("peak", "after_sweep", "after_idle", "idle_seconds")})
    assert not seen["errors"], seen["errors"]
    assert seen["before"] == []  # min_workers 0: no worker until trials wait

    gpu_types = {n: t for n, t in config["available_node_types"].items() if n != FAKE_HEAD}
    nodes = seen["nodes"]
    assert 1 <= len(nodes) and seen["peak"] <= config["max_workers"]
    assert all(n["gpus"] in {t["resources"]["GPU"] for t in gpu_types.values()} for n in nodes.values())
    # more trials than GPUs the cluster may hold at once: it grew to max_workers
    if sum(n["gpus"] for n in nodes.values()) < trials:
        assert seen["peak"] == config["max_workers"]

    # every trial's worker on a worker node (the head has CPU 0), one GPU each, never two at once on one GPU
    ran = seen["trials"]
    assert len(ran) == trials and all(t["node"] in nodes and len(t["gpu_ids"]) == 1 for t in ran)
    for a in ran:
        for b in ran:
            if a is not b and (a["node"], a["gpu_ids"]) == (b["node"], b["gpu_ids"]):
                assert a["end"] <= b["start"] or b["end"] <= a["start"], (a, b)

    # once the sweep's job is over and the nodes idle for idle_timeout_minutes, every worker goes away
    assert seen["after_sweep"] >= 1 and seen["after_idle"] == 0, seen
    assert seen["idle_seconds"] >= IDLE_MINUTES * 60
