"""deploy/: the Ray cluster launcher config, the KubeRay manifest and the head's MLflow script.

Nothing here reaches a cloud: the launcher config is checked against the schema that ships in the
installed `ray`, its commands against this checkout, every file under deploy/ against secrets.
"""

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CLUSTER = DEPLOY / "ray-cluster.yaml"
KUBERAY = DEPLOY / "kuberay-cluster.yaml"
MLFLOW_SH = DEPLOY / "mlflow-server.sh"
REMOTE_REPO = "~/clintraj"


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


@pytest.fixture(scope="module")
def kuberay() -> list[dict]:
    return [doc for doc in yaml.safe_load_all(KUBERAY.read_text()) if doc]


def _ray_cluster(docs: list[dict]) -> dict:
    (found,) = [d for d in docs if d.get("kind") == "RayCluster"]
    return found


def _commands(config: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    commands = [c for key in keys for c in config.get(key) or []]
    for node_type in config["available_node_types"].values():
        for key in ("initialization_commands", "worker_setup_commands"):
            commands += node_type.get(key) or []
    return commands


def _worker_types(config: dict) -> dict:
    return {name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]}


def _normalise_home(path: str) -> str:
    return re.sub(r"^(\$HOME|\$\{HOME\})(?=/)", "~", path)


# --- ray-cluster.yaml: schema -------------------------------------------------------------------

def test_cluster_config_validates_against_the_installed_ray_schema(cluster):
    import jsonschema
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    assert schema_path.is_file(), f"no schema at {schema_path}"
    jsonschema.validate(cluster, json.loads(schema_path.read_text()))


def test_cluster_config_passes_rays_own_validation_after_defaults(cluster):
    """What `ray up` does before it touches AWS: merge the provider defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(json.loads(json.dumps(cluster)))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_cluster_is_aws_with_stopped_node_cache_and_idle_timeout(cluster):
    provider = cluster["provider"]
    assert provider["type"] == "aws"
    assert re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", provider["region"])
    assert provider["cache_stopped_nodes"] is True
    assert 0 < cluster["idle_timeout_minutes"] <= 30
    assert cluster["max_workers"] >= sum(t["max_workers"] for t in _worker_types(cluster).values())


# --- ray-cluster.yaml: node types ---------------------------------------------------------------

def test_head_is_a_cpu_node_that_takes_no_tasks(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    assert not head["resources"].get("GPU")
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))


def test_every_worker_type_requests_gpus_and_scales_from_zero(cluster):
    workers = _worker_types(cluster)
    assert len(workers) >= 2
    for name, node_type in workers.items():
        assert node_type["resources"].get("GPU", 0) >= 1, f"{name} requests no GPU"
        assert node_type["min_workers"] == 0, f"{name} keeps GPU nodes running while idle"
        assert node_type["max_workers"] >= 1, name


def test_worker_types_cover_one_gpu_trials_and_a_multi_gpu_node(cluster):
    gpus = sorted(t["resources"]["GPU"] for t in _worker_types(cluster).values())
    assert gpus[0] == 1 and gpus[-1] >= 4


def test_all_nodes_share_one_ami(cluster):
    images = {t["node_config"]["ImageId"] for t in cluster["available_node_types"].values()}
    assert len(images) == 1 and all(isinstance(i, str) and i.startswith("ami-") for i in images)


# --- ray-cluster.yaml: commands and file mounts -------------------------------------------------

def test_file_mounts_come_from_the_repository_or_the_home_directory(cluster):
    from_repository = 0
    for remote, local in cluster["file_mounts"].items():
        if local.startswith("~/"):  # the user's settings and Ray token, never in the repository
            assert remote == local
            continue
        assert not Path(local).is_absolute(), f"{local}: file mounts are relative to the repository root"
        assert (REPO / local).exists(), f"file mount {remote} <- {local}: {local} is not in the repository"
        assert remote.startswith(REMOTE_REPO + "/"), remote
        from_repository += 1
    assert from_repository >= 3  # at least pyproject.toml, its readme and platform/ (the editable install)


def test_editable_install_has_what_setuptools_reads(cluster):
    """`pip install -e ~/clintraj` builds from pyproject.toml, its readme and the source root."""
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = {"pyproject.toml", pyproject["project"]["readme"], *pyproject["tool"]["setuptools"]["packages"]["find"]["where"]}
    mounted = {remote.removeprefix(REMOTE_REPO + "/") for remote in cluster["file_mounts"]}
    assert needed <= mounted


def _mounted_local_path(cluster: dict, remote: str) -> Path | None:
    """The local path that `remote` (a path on a node) is synced from, or None if none is."""
    remote = _normalise_home(remote)
    for mount_remote, mount_local in cluster["file_mounts"].items():
        if remote == mount_remote or remote.startswith(mount_remote + "/"):
            return REPO / mount_local / remote[len(mount_remote):].lstrip("/")
    return None


def test_paths_in_commands_exist_in_the_repository(cluster):
    """Every ~/clintraj/... path a command uses is synced by a file mount from a file in this checkout."""
    seen = 0
    for command in _commands(cluster):
        for token in re.findall(r"(?:~|\$HOME|\$\{HOME\})/clintraj(?:/[\w./-]*)?", command):
            token = token.rstrip("./") if token.endswith("/") else token
            if token in (REMOTE_REPO, "$HOME/clintraj", "${HOME}/clintraj"):
                assert (REPO / "pyproject.toml").is_file()
                seen += 1
                continue
            local = _mounted_local_path(cluster, token)
            assert local is not None, f"{token} (in `{command[:80]}...`) is under no file mount"
            assert local.exists(), f"{token} -> {local.relative_to(REPO)} does not exist in the repository"
            seen += 1
    assert seen >= 3


def test_scripts_run_by_commands_are_executable(cluster):
    scripts = set()
    for command in _commands(cluster):
        for token in re.findall(r"(?:~|\$HOME|\$\{HOME\})/clintraj/[\w./-]+\.sh", command):
            local = _mounted_local_path(cluster, token)
            assert local is not None and os.access(local, os.X_OK), f"{token} is not executable"
            scripts.add(_normalise_home(token))
    assert "~/clintraj/deploy/mlflow-server.sh" in scripts  # the head starts MLflow with it


def test_setup_installs_cuda_torch_then_the_project_with_its_gpu_extra(cluster):
    common = " && ".join(cluster["setup_commands"])
    workers = " && ".join(cluster["worker_setup_commands"])
    torch_at = common.index("download.pytorch.org/whl/cu")
    project_at = common.index("-e ~/clintraj")
    assert torch_at < project_at, "CUDA torch must be installed before the project pulls torch in"
    assert re.search(r'-e "\$HOME/clintraj\[gpu\]"', workers), "worker nodes install the [gpu] extra"
    assert "--no-build-isolation" in workers, "flash-attn builds against the installed torch"
    cuda_index = re.search(r"whl/cu(\d+)(\d)\b", common)
    cuda_home = re.search(r"CUDA_HOME=/usr/local/cuda-(\d+)\.(\d)\b", workers)
    assert cuda_index and cuda_home and cuda_index.groups() == cuda_home.groups(), \
        "flash-attn must compile with the CUDA of the torch wheel"


def test_setup_pins_the_launching_ray_version(cluster):
    import ray

    pins = re.findall(r"ray\[default\]==([\w.]+)", " ".join(cluster["setup_commands"]))
    assert pins == [ray.__version__], "nodes must run the Ray that launches the cluster"


def test_no_tilde_inside_double_quotes(cluster):
    """The shell does not expand ~ inside double quotes: pip would get a literal '~/clintraj'."""
    checked = 0
    for command in _commands(cluster):
        for quoted in re.findall(r'"([^"]*)"', command):
            assert "~" not in quoted, f"~ inside double quotes in `{command[:80]}`"
            checked += 1
    assert checked > 0  # e.g. the workers' -e "$HOME/clintraj[gpu]"


def _start_args(command: str) -> list[str]:
    return shlex.split(command[command.index("ray start"):])


def test_dashboard_listens_on_the_head_only(cluster):
    (start,) = [c for c in cluster["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in _start_args(start)


def test_head_runs_the_mlflow_server_script(cluster):
    (launch,) = [c for c in cluster["head_start_ray_commands"] if "mlflow-server.sh" in c]
    assert "~/clintraj/deploy/mlflow-server.sh --background" in launch
    assert not any("mlflow" in c for c in cluster["worker_start_ray_commands"])
    # Bound beyond loopback only so that GPU workers can log metrics; nothing outside may reach it.
    host = re.search(r"MLFLOW_HOST=(\S+)", launch)
    assert host is None or host.group(1) in ("127.0.0.1", "0.0.0.0")
    if host and host.group(1) == "0.0.0.0":
        assert not cluster["provider"].get("security_group", {}).get("IpPermissions"), \
            "MLflow binds 0.0.0.0: the security group must add no inbound rule"


def test_ray_processes_get_settings_but_not_the_store_credentials(cluster):
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in cluster[key] if "ray start" in c]
        before = start[: start.index("ray start")]
        assert ". ~/.clintraj.env" in before
        assert re.search(r"unset [^&;]*PGPASSWORD", before) and re.search(r"unset [^&;]*MLFLOW_BACKEND_STORE_URI", before)
        assert "RAY_AUTH_MODE=token" in before
        assert "MLFLOW_TRACKING_URI=" in before


def test_workers_point_mlflow_at_the_head(cluster):
    (start,) = [c for c in cluster["worker_start_ray_commands"] if "ray start" in c]
    assert "http://$RAY_HEAD_IP:5000" in start
    assert "--address=$RAY_HEAD_IP:6379" in start


# --- secrets ------------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key setting": re.compile(r"aws_secret_access_key|AWS_SECRET_ACCESS_KEY\s*[=:]\s*\S", re.I),
    "password in a URI": re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:[^\s/@'\"]+@"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "Slack token": re.compile(r"\bxox[abpors]-[A-Za-z0-9-]{10,}"),
}


def _deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_secret_patterns_catch_what_they_are_for():
    assert SECRET_PATTERNS["AWS access key id"].search("key AKIAIOSFODNN7EXAMPLE here")
    assert SECRET_PATTERNS["password in a URI"].search("postgresql://mlflow:hunter2@db:5432/mlflow")
    assert not SECRET_PATTERNS["password in a URI"].search("postgresql://mlflow@db:5432/mlflow")
    assert not SECRET_PATTERNS["password in a URI"].search("http://$RAY_HEAD_IP:5000")
    assert SECRET_PATTERNS["AWS secret key setting"].search("aws_secret_access_key = x")


def test_the_secret_scan_covers_the_deploy_files():
    """The scan below is parametrized by _deploy_files(): an empty list would leave nothing scanned."""
    names = {p.relative_to(DEPLOY).as_posix() for p in _deploy_files()}
    assert {"README.md", CLUSTER.name, KUBERAY.name, MLFLOW_SH.name} <= names


@pytest.mark.parametrize("path", _deploy_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_secrets_in_deploy_files(path):
    text = path.read_text(errors="replace")
    found = {name for name, pattern in SECRET_PATTERNS.items() if pattern.search(text)}
    assert not found, f"{path.relative_to(REPO)}: {sorted(found)}"


def test_cluster_config_sets_no_credentials_or_secret_values(cluster):
    text = json.dumps(cluster)
    for name in ("MLFLOW_BACKEND_STORE_URI=", "MLFLOW_ARTIFACT_ROOT=", "CLINTRAJ_STORAGE=", "HF_TOKEN=",
                 "PGPASSWORD=", "AWS_ACCESS_KEY_ID", "s3://"):
        assert name not in text, f"{name} belongs in ~/.clintraj.env, not in the cluster config"


# --- kuberay-cluster.yaml -----------------------------------------------------------------------

def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_kuberay_is_a_ray_cluster_with_in_tree_autoscaling(kuberay):
    import ray

    rc = _ray_cluster(kuberay)
    assert rc["apiVersion"] == "ray.io/v1"
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    assert rc["spec"]["rayVersion"] == ray.__version__
    groups = [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]
    images = parameters = 0
    for group in groups:
        for container in _containers(group):
            image, _, tag = container["image"].rpartition(":")
            assert image and tag.startswith(rc["spec"]["rayVersion"] + "-"), container["image"]
            images += 1
        for key, value in group["rayStartParams"].items():
            assert isinstance(value, str), f"rayStartParams.{key} must be a string for KubeRay"
            parameters += 1
    assert len(groups) >= 2 and images >= len(groups)  # the head and the worker groups, each with an image
    assert parameters >= 1  # the head's num-cpus at least


def test_kuberay_head_takes_no_tasks_and_runs_mlflow(kuberay):
    head = _ray_cluster(kuberay)["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (mlflow,) = [c for c in _containers(head) if c["name"] == "mlflow"]
    args = mlflow["args"]
    assert args[args.index("--workers") + 1] == "1"
    assert {"name": "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "value": "false"} in mlflow["env"]
    assert {"--backend-store-uri", "--artifacts-destination"} <= set(args)


def test_kuberay_worker_groups_match_the_launcher_node_types(kuberay, cluster):
    groups = _ray_cluster(kuberay)["spec"]["workerGroupSpecs"]
    launcher = {t["resources"]["GPU"]: t for t in _worker_types(cluster).values()}
    by_gpus = {}
    for group in groups:
        assert group["minReplicas"] == 0 and group["replicas"] == 0, group["groupName"]
        (worker,) = _containers(group)
        limits = worker["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1, group["groupName"]
        assert int(worker["resources"]["requests"]["nvidia.com/gpu"]) == int(limits["nvidia.com/gpu"])
        by_gpus[int(limits["nvidia.com/gpu"])] = group
    assert set(by_gpus) == set(launcher), "the same node groups as deploy/ray-cluster.yaml"
    for gpus, group in by_gpus.items():
        assert group["maxReplicas"] == launcher[gpus]["max_workers"], group["groupName"]


def test_kuberay_settings_come_from_a_secret_reference(kuberay):
    """URIs and tokens are referenced from a Secret, never written; no Secret object is defined here."""
    assert not [d for d in kuberay if d.get("kind") == "Secret"]
    rc = _ray_cluster(kuberay)
    sensitive = {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACT_ROOT", "PGPASSWORD", "CLINTRAJ_STORAGE", "HF_TOKEN"}
    seen = set()
    for group in [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]:
        for container in _containers(group):
            for env in container.get("env", []):
                if env["name"] in sensitive:
                    assert "value" not in env, f"{env['name']} has a literal value"
                    assert env["valueFrom"]["secretKeyRef"]["name"], env["name"]
                    seen.add(env["name"])
    assert {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACT_ROOT"} <= seen


def test_kuberay_exposes_nothing_outside_the_kubernetes_cluster(kuberay):
    assert not [d for d in kuberay if d.get("kind") in ("Ingress", "Route", "Gateway")]
    rc = _ray_cluster(kuberay)
    assert rc["spec"]["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
    services = [d for d in kuberay if d.get("kind") == "Service"]
    assert services  # the MLflow Service: its type is checked, not skipped
    for service in services:
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]


def test_kuberay_mlflow_service_selects_the_head_pod(kuberay):
    (service,) = [d for d in kuberay if d.get("kind") == "Service"]
    name = _ray_cluster(kuberay)["metadata"]["name"]
    assert service["spec"]["selector"] == {"ray.io/cluster": name, "ray.io/node-type": "head"}
    uri = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    rc = _ray_cluster(kuberay)
    assert rc["spec"]["workerGroupSpecs"]
    for group in rc["spec"]["workerGroupSpecs"]:
        (worker,) = _containers(group)
        assert {"name": "MLFLOW_TRACKING_URI", "value": uri} in worker["env"]


# --- the runtime_env in deploy/README.md --------------------------------------------------------

def test_documented_runtime_env_ships_the_code_and_leaves_data_behind():
    from ray._private.runtime_env.packaging import _get_excludes

    blocks = re.findall(r"```json\n(.*?)\n```", (DEPLOY / "README.md").read_text(), re.S)
    assert blocks, "deploy/README.md has no runtime_env JSON block"
    runtime_env = json.loads(blocks[0])
    assert runtime_env["env_vars"]["PYTHONPATH"] == "platform"
    assert "py_modules" not in runtime_env, "excludes also apply to py_modules, relative to the package"
    excluded = _get_excludes(REPO, runtime_env["excludes"])
    code = [p for top in ("platform", "jobs", "search_spaces", "deploy") for p in (REPO / top).rglob("*.py")]
    code += [REPO / "pyproject.toml", REPO / "platform" / "clintraj" / "data"]
    assert len(code) > 10
    kept_out = [p.relative_to(REPO).as_posix() for p in code if excluded(p)]
    assert not kept_out, f"the job would run without {kept_out[:5]}"
    for left_behind in ("data/eicu-v1/cohort.parquet", "physionet.org/files/eicu-crd/2.0/lab.csv.gz",
                        "clintraj-work/mlflow/mlflow.db"):
        assert excluded(REPO / left_behind), left_behind


# --- mlflow-server.sh ---------------------------------------------------------------------------

def _fake_mlflow(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH holding an `mlflow` that records its arguments and environment instead of serving."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "mlflow-called.json"
    fake = bin_dir / "mlflow"
    fake.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(record)!r}, 'w'))\n")
    fake.chmod(0o755)
    return bin_dir, record


def test_mlflow_script_is_executable():
    assert MLFLOW_SH.stat().st_mode & stat.S_IXUSR
    assert MLFLOW_SH.read_text().startswith("#!/usr/bin/env bash\n")


def test_mlflow_script_fails_clearly_without_its_settings(tmp_path):
    bin_dir, record = _fake_mlflow(tmp_path)
    for env in ({}, {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}):
        for args in ([], ["--background"]):
            done = subprocess.run([str(MLFLOW_SH), *args], env=env, capture_output=True, text=True, timeout=30)
            assert done.returncode != 0
            assert "MLFLOW_BACKEND_STORE_URI" in done.stderr and "MLFLOW_ARTIFACT_ROOT" in done.stderr, done.stderr
            assert "not started" in done.stderr
            assert not record.exists(), "mlflow was started without its settings"
    assert not (tmp_path / "mlflow-server.pid").exists()


def test_mlflow_script_names_only_what_is_missing(tmp_path):
    bin_dir, record = _fake_mlflow(tmp_path)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_ARTIFACT_ROOT": "s3://bucket/mlflow"}
    done = subprocess.run([str(MLFLOW_SH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "MLFLOW_BACKEND_STORE_URI" in done.stderr
    assert "MLFLOW_ARTIFACT_ROOT" not in done.stderr.splitlines()[0]
    assert not record.exists()


def test_mlflow_script_refuses_a_password_in_the_store_uri(tmp_path):
    bin_dir, record = _fake_mlflow(tmp_path)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_ARTIFACT_ROOT": "s3://bucket/mlflow",
           "MLFLOW_BACKEND_STORE_URI": "postgresql://mlflow:secret@db:5432/mlflow"}
    done = subprocess.run([str(MLFLOW_SH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "PGPASSWORD" in done.stderr
    assert "secret" not in done.stderr + done.stdout
    assert not record.exists()


def test_mlflow_script_starts_one_lean_worker_on_loopback_by_default(tmp_path):
    bin_dir, record = _fake_mlflow(tmp_path)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
           "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/store/mlflow.db",
           "MLFLOW_ARTIFACT_ROOT": "s3://bucket/mlflow"}
    done = subprocess.run([str(MLFLOW_SH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    called = json.loads(record.read_text())
    argv = called["argv"]
    assert argv[0] == "server"
    option = lambda name: argv[argv.index(name) + 1]  # noqa: E731
    assert option("--backend-store-uri") == env["MLFLOW_BACKEND_STORE_URI"]
    assert option("--artifacts-destination") == "s3://bucket/mlflow"
    assert option("--host") == "127.0.0.1"
    assert option("--port") == "5000"
    assert option("--workers") == "1"
    assert called["env"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert (tmp_path / "store").is_dir(), "the sqlite store's folder is created"


def test_mlflow_script_reads_the_env_file_and_the_environment_wins(tmp_path):
    bin_dir, record = _fake_mlflow(tmp_path)
    (tmp_path / ".clintraj.env").write_text(
        "MLFLOW_BACKEND_STORE_URI=sqlite:////tmp/from-file.db\n"
        "MLFLOW_ARTIFACT_ROOT=s3://bucket/from-file\n"
        "MLFLOW_HOST=127.0.0.1\n")
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_HOST": "0.0.0.0"}
    done = subprocess.run([str(MLFLOW_SH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    argv = json.loads(record.read_text())["argv"]
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://bucket/from-file"
    assert argv[argv.index("--host") + 1] == "0.0.0.0"


@pytest.mark.slow
def test_mlflow_script_serves_in_the_background_and_stops(tmp_path):
    """The real server, as the head starts it: detached, healthy, proxying artifacts, stoppable."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HOME": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlflow/mlflow.db",
           "MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"), "MLFLOW_PORT": str(port)}
    pid_file = tmp_path / "mlflow-server.pid"
    try:
        done = subprocess.run([str(MLFLOW_SH), "--background"], env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        pid = int(pid_file.read_text())
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"http://127.0.0.1:{port}")
        run = client.create_run(client.create_experiment("deploy-check"))
        client.log_metric(run.info.run_id, "x", 1.0)
        client.log_text(run.info.run_id, "hello", "a.txt")
        assert list((tmp_path / "artifacts").rglob("a.txt")), "artifacts go through the server's proxy"
    finally:
        subprocess.run([str(MLFLOW_SH), "--stop"], env=env, capture_output=True, timeout=60)
    assert not pid_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# --- the shared work folder -------------------------------------------------------------------


def test_nodes_mount_the_shared_work_folder_the_env_file_names(cluster):
    mount = [c for c in cluster["setup_commands"] if "/mnt/shared" in c]
    assert len(mount) == 1, "one setup command mounts the shared work folder"
    command = mount[0]
    assert "CLINTRAJ_EFS" in command and "~/.clintraj.env" in command and "nfs4" in command
    assert "mountpoint -q /mnt/shared" in command  # idempotent: `ray up` reruns it
    assert '[ -z "$CLINTRAJ_EFS" ]' in command  # unset: nothing mounted, the node still comes up
    assert "CLINTRAJ_EFS=" in (REPO / "deploy" / "README.md").read_text()


def test_kuberay_pods_mount_one_shared_read_write_many_claim(kuberay):
    claims = [doc for doc in kuberay if doc["kind"] == "PersistentVolumeClaim"]
    assert len(claims) == 1 and claims[0]["spec"]["accessModes"] == ["ReadWriteMany"]
    name = claims[0]["metadata"]["name"]
    ray_cluster = _ray_cluster(kuberay)
    pods = [ray_cluster["spec"]["headGroupSpec"]["template"]["spec"]] + [
        group["template"]["spec"] for group in ray_cluster["spec"]["workerGroupSpecs"]]
    assert len(pods) >= 2  # the head and the worker groups
    for pod in pods:
        volumes = {v["name"]: v for v in pod["volumes"]}
        ray_container = pod["containers"][0]
        mounted = {m["mountPath"]: m["name"] for m in ray_container["volumeMounts"]}
        assert volumes[mounted["/mnt/shared"]]["persistentVolumeClaim"]["claimName"] == name
