"""Run by tests/test_cluster.py in a process of its own (a process holds one Ray): on a local Ray
cluster of two nodes (`ray.cluster_utils.Cluster`), run jobs/preprocess.py --ray-address with
each argument list of PREPROCESS (a JSON list) and embed the first dataset with scratch
encoders; then embed SERIAL_DATASET on a one-node Ray. Where the embedding actors ran, and what
a reader's error on a node becomes, are printed as one JSON line.

    python tests/multinode.py RAW WORK SERIAL_DATASET PREPROCESS
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

# Before Ray is imported: the test cluster and every process connecting to it go without Ray's
# token (~/.ray/auth_token enables it by default), on loopback only.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.pop("RAY_ADDRESS", None)

import ray
from ray.cluster_utils import Cluster

from clintraj.data.rawio import table_path
from clintraj.runtime import LOCAL_RAY_ENV, run_each
from clintraj.workflows import embed

os.environ.update(LOCAL_RAY_ENV)  # a one-machine cluster: the settings of a local Ray

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def recording(base: type, folder: Path) -> type:
    """`base` (an embedding actor) that leaves a file named by its node id in `folder`."""

    class Recorded(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            (folder / ray.get_runtime_context().get_node_id()).touch()

    return Recorded


ACTORS = {"EmbedStays": embed.EmbedStays, "EmbedEvents": embed.EmbedEvents}


def embed_here(dataset: Path, out: Path, workdir: Path, actors: int, nodes: Path) -> None:
    nodes.mkdir(parents=True)
    for name, actor in ACTORS.items():
        setattr(embed, name, recording(actor, nodes))
    embed.run(dataset, out, "scratch", workdir, seed=0, actors=actors)


def main(raw: Path, work: Path, serial: Path, preprocess: list[list[str]]) -> None:
    # not Ray's default agent ports: another Ray on this machine may hold them
    head = {"num_cpus": 1, "include_dashboard": False, "dashboard_agent_listen_port": free_port(),
            "runtime_env_agent_port": free_port(), "metrics_export_port": free_port()}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        cluster.add_node(num_cpus=2, object_store_memory=200 * 2**20)
        cluster.wait_for_nodes()
        for arguments in preprocess:
            subprocess.run([sys.executable, "jobs/preprocess.py", *arguments, "--ray-address", cluster.address],
                           cwd=REPO, check=True)
        ray.init(address=cluster.address)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        failure = None
        try:  # a reader's error on a node reaches the driver as itself
            run_each([partial(table_path, raw, "absent.csv.gz")])
        except Exception as error:  # noqa: BLE001 - reported to the test
            failure = {"type": type(error).__name__, "message": str(error)}
        first = Path(preprocess[0][preprocess[0].index("--out") + 1])
        embed_here(first, work / "emb-cluster", work / "w-cluster", 2, work / "nodes-cluster")
        ray.shutdown()
    finally:
        cluster.shutdown()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        embed_here(serial, work / "emb-one", work / "w-one", 1, work / "nodes-one")
    finally:
        ray.shutdown()
    nodes = {run: [n.name for n in (work / f"nodes-{run}").iterdir()] for run in ("cluster", "one")}
    print(json.dumps({"nodes": nodes, "failure": failure}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4]))
