"""deploy/: the Ray cluster launcher config, the KubeRay manifest, the MLflow server script, the
SSM reader and the AWS roles' policies.

Nothing here reaches a cloud: the launcher config is checked against the schema that ships in the
installed `ray`, its commands against this checkout, every file under deploy/ against secrets, the
security properties (token auth, network, MLflow login, which process gets which secret) against
the files and against deploy/README.md's tables; SSM is moto's, on loopback.
"""

import fnmatch
import json
import os
import re
import shlex
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CLUSTER = DEPLOY / "ray-cluster.yaml"
KUBERAY = DEPLOY / "kuberay-cluster.yaml"
MLFLOW_SH = DEPLOY / "mlflow-server.sh"
SSM_ENV = DEPLOY / "ssm_env.py"
IAM = DEPLOY / "iam"
DEPLOY_README = DEPLOY / "README.md"
REMOTE_REPO = "~/clintraj"
RAY_PARAMETERS = "/clintraj/ray"
MLFLOW_SERVER_PARAMETERS = "/clintraj/mlflow-server"


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


def _ssm_paths(command: str) -> list[str]:
    """The SSM paths a command reads through deploy/ssm_env.py."""
    return re.findall(r"ssm_env\.py (/[\w/-]+)", command)


def _readme_rows() -> list[str]:
    return [line for line in DEPLOY_README.read_text().splitlines() if line.startswith("|")]


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

def test_file_mounts_come_from_the_repository_or_are_rays_token(cluster):
    from_repository, from_home = 0, set()
    for remote, local in cluster["file_mounts"].items():
        if local.startswith("~/"):
            assert remote == local
            from_home.add(local)
            continue
        assert not Path(local).is_absolute(), f"{local}: file mounts are relative to the repository root"
        assert (REPO / local).exists(), f"file mount {remote} <- {local}: {local} is not in the repository"
        assert remote.startswith(REMOTE_REPO + "/"), remote
        from_repository += 1
    assert from_repository >= 3  # at least pyproject.toml, its readme and platform/ (the editable install)
    # The only file from your machine is the token every Ray process needs; settings and secrets
    # come from SSM at start, into the environment of the process that uses them.
    assert from_home == {"~/.ray/auth_token"}


def test_no_settings_file_reaches_the_nodes():
    """The old ~/.clintraj.env (the store password and the hub token) went to every node."""
    for path in (CLUSTER, MLFLOW_SH):
        assert ".clintraj.env" not in path.read_text(), path.name
    assert "CLINTRAJ_ENV_FILE" not in MLFLOW_SH.read_text()


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


def test_setup_installs_boto3_before_the_first_ssm_read(cluster):
    setup = cluster["setup_commands"]
    first_read = next(i for i, command in enumerate(setup) if "ssm_env.py" in command)
    boto3 = next(i for i, command in enumerate(setup) if re.search(r"~/venv/bin/pip install .*\bboto3\b", command))
    assert boto3 < first_read
    readers = [command for command in _commands(cluster) if "ssm_env.py" in command]
    assert len(readers) >= 4  # the EFS mount, both `ray start`s and the MLflow server
    for command in readers:
        assert "~/venv/bin/python ~/clintraj/deploy/ssm_env.py /" in command, command[:80]


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
    assert not any("mlflow-server" in c for c in cluster["worker_start_ray_commands"])
    # basic auth needs Flask-WTF (mlflow's auth extra); the script always starts the auth app
    assert '"mlflow[auth]"' in " ".join(cluster["head_setup_commands"])
    # Bound beyond loopback only so that GPU workers can log metrics; nothing outside may reach it.
    host = re.search(r"MLFLOW_HOST=(\S+)", launch)
    assert host is None or host.group(1) in ("127.0.0.1", "0.0.0.0")
    if host and host.group(1) == "0.0.0.0":
        assert not cluster["provider"].get("security_group", {}).get("IpPermissions"), \
            "MLflow binds 0.0.0.0: the security group must add no inbound rule"


def test_every_ray_start_has_token_auth_and_the_ray_parameters_only(cluster):
    """`ray start` runs under ssm_env.py /clintraj/ray: its processes (job drivers, tasks, actors)
    get the jobs' MLflow login, storage and hub token, and nothing of the MLflow server's."""
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in cluster[key] if "ray start" in c]
        before = start[: start.index("ray start")]
        assert re.search(r"export RAY_AUTH_MODE=token\b", before)
        assert "MLFLOW_TRACKING_URI=" in before
        assert _ssm_paths(start) == [RAY_PARAMETERS]
        # `ray start` is the command ssm_env.py becomes
        assert re.search(r"ssm_env\.py /clintraj/ray (--require \S+ )?-- ray start ", start)
        required = re.search(r"--require (\S+)", before).group(1).split(",")
        assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(required)
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # the token every node needs
    assert any("chmod 600 ~/.ray/auth_token" in c for c in cluster["setup_commands"])


def test_only_the_mlflow_server_reads_its_parameters(cluster):
    readers = [c for c in _commands(cluster) if MLFLOW_SERVER_PARAMETERS in c]
    assert len(readers) == 1 and readers[0] in cluster["head_start_ray_commands"]
    assert _ssm_paths(readers[0]) == [MLFLOW_SERVER_PARAMETERS]
    assert re.search(r"-- env MLFLOW_HOST=\S+ ~/clintraj/deploy/mlflow-server\.sh --background$", readers[0])


def test_workers_point_mlflow_at_the_head(cluster):
    (start,) = [c for c in cluster["worker_start_ray_commands"] if "ray start" in c]
    assert "http://$RAY_HEAD_IP:5000" in start
    assert "--address=$RAY_HEAD_IP:6379" in start


# --- the AWS roles (deploy/iam/) -----------------------------------------------------------------

PARAMETER_ARN = "arn:aws:ssm:us-east-1:123456789012:parameter"
READS_PARAMETERS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory")


def _policy(node: str) -> dict:
    return json.loads((IAM / f"clintraj-ray-{node}.json").read_text())


def _allows(policy: dict, action: str, resource: str) -> bool:
    """Whether an Allow statement covers (action, resource), with IAM's wildcards (actions match
    case-insensitively). NotAction / NotResource count as allowing everything: the check fails safe."""
    listed = lambda value: [value] if isinstance(value, str) else value  # noqa: E731
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        if {"NotAction", "NotResource"} & set(statement):
            return True
        if (any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in listed(statement["Action"]))
                and any(fnmatch.fnmatchcase(resource, r) for r in listed(statement["Resource"]))):
            return True
    return False


def test_the_policy_check_sees_wildcards():
    broad = {"Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]}
    assert _allows(broad, "ssm:GetParameter", PARAMETER_ARN + "/clintraj/mlflow-server/PGPASSWORD")
    assert not _allows({"Statement": [{**broad["Statement"][0], "Effect": "Deny"}]}, "ssm:GetParameter", "x")
    parent = {"Statement": [{"Effect": "Allow", "Action": "ssm:GetParametersByPath",
                             "Resource": PARAMETER_ARN + "/clintraj*"}]}
    assert _allows(parent, "ssm:GetParametersByPath", PARAMETER_ARN + "/clintraj/mlflow-server")


def test_nodes_run_with_the_roles_in_deploy_iam(cluster):
    profiles = {name: node_type["node_config"]["IamInstanceProfile"]["Name"]
                for name, node_type in cluster["available_node_types"].items()}
    assert profiles.pop(cluster["head_node_type"]) == "clintraj-ray-head"
    assert set(profiles.values()) == {"clintraj-ray-worker"}
    trust = json.loads((IAM / "ec2-trust.json").read_text())
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_only_the_heads_role_may_read_the_mlflow_server_parameters():
    """GetParametersByPath is authorized against the requested path: the workers' role must match
    neither the MLflow server's path, nor a parameter in it, nor a parent of it."""
    head, worker = _policy("head"), _policy("worker")
    for action in READS_PARAMETERS:
        for path in (MLFLOW_SERVER_PARAMETERS, MLFLOW_SERVER_PARAMETERS + "/PGPASSWORD", "/clintraj", "/"):
            assert not _allows(worker, action, PARAMETER_ARN + path), (action, path)
            assert not _allows(head, action, PARAMETER_ARN + path) or path == MLFLOW_SERVER_PARAMETERS, (action, path)
    for policy in (head, worker):
        assert _allows(policy, "ssm:GetParametersByPath", PARAMETER_ARN + RAY_PARAMETERS)
    assert _allows(head, "ssm:GetParametersByPath", PARAMETER_ARN + MLFLOW_SERVER_PARAMETERS)


def test_roles_reach_only_their_part_of_the_bucket():
    """Artifacts only through the authenticated MLflow server; inputs read-only; the head passes
    only the workers' role."""
    head, worker = _policy("head"), _policy("worker")
    bucket = "arn:aws:s3:::YOUR-BUCKET"
    for action in ("s3:GetObject", "s3:PutObject"):
        assert not _allows(worker, action, f"{bucket}/mlflow/1/run/artifacts/model.pt"), action
        assert _allows(head, action, f"{bucket}/mlflow/1/run/artifacts/model.pt"), action
        for policy in (head, worker):
            assert _allows(policy, action, f"{bucket}/clintraj/sequential/checkpoint_000001/head.pt"), action
    for policy in (head, worker):
        assert _allows(policy, "s3:GetObject", f"{bucket}/data/eicu-crd/2.0/lab.csv.gz")
        assert not _allows(policy, "s3:PutObject", f"{bucket}/data/eicu-crd/2.0/lab.csv.gz")
        assert not _allows(policy, "iam:PassRole", "arn:aws:iam::123456789012:role/admin")
    assert _allows(head, "iam:PassRole", "arn:aws:iam::123456789012:role/clintraj-ray-worker")
    assert not _allows(worker, "iam:PassRole", "arn:aws:iam::123456789012:role/clintraj-ray-worker")


# --- deploy/ssm_env.py, against moto's SSM on loopback ---------------------------------------------

@pytest.fixture
def ssm(tmp_path, monkeypatch):
    """(an SSM client, the environment that points boto3 at it) for a moto server on 127.0.0.1."""
    server_module = pytest.importorskip("moto.server", reason="moto (the test extra) is not installed")
    import boto3

    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("ssm")
    for name, kind, value in (
            ("/clintraj/ray/MLFLOW_TRACKING_USERNAME", "String", "clintraj-jobs"),
            ("/clintraj/ray/MLFLOW_TRACKING_PASSWORD", "SecureString", "jobs-canary-7f3a"),
            ("/clintraj/ray/HF_TOKEN", "SecureString", "hub-canary-91c2"),
            ("/clintraj/ray/nested/DEEPER", "String", "deeper-canary"),
            ("/clintraj/mlflow-server/PGPASSWORD", "SecureString", "store-canary-5b0e")):
        client.put_parameter(Name=name, Type=kind, Value=value)
    yield client, env
    # moto keeps its backends per process, across servers: leave nothing for the next test
    urllib.request.urlopen(urllib.request.Request(env["AWS_ENDPOINT_URL"] + "/moto-api/reset", method="POST"))
    server.stop()


def test_ssm_env_runs_the_command_with_the_parameters_under_its_path(ssm, tmp_path):
    _, env = ssm
    seen = tmp_path / "environment.json"
    dump = f"import json, os; json.dump(dict(os.environ), open({str(seen)!r}, 'w'))"
    done = subprocess.run(
        [sys.executable, str(SSM_ENV), RAY_PARAMETERS, "--require", "MLFLOW_TRACKING_USERNAME,MLFLOW_TRACKING_PASSWORD",
         "--", sys.executable, "-c", dump],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HF_TOKEN": "stale", **env},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(seen.read_text())
    assert got["MLFLOW_TRACKING_USERNAME"] == "clintraj-jobs"
    assert got["MLFLOW_TRACKING_PASSWORD"] == "jobs-canary-7f3a"  # SecureString, decrypted
    assert got["HF_TOKEN"] == "hub-canary-91c2"  # the parameter wins over what was set
    assert "PGPASSWORD" not in got and "DEEPER" not in got  # another path; below this one
    assert not re.search(r"canary", done.stdout + done.stderr)


def test_ssm_env_names_what_is_missing_and_starts_nothing(ssm, monkeypatch, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("ssm_env", SSM_ENV)
    ssm_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ssm_env)
    started = []
    monkeypatch.setattr(os, "execvpe", lambda *args: started.append(args))
    client, _ = ssm
    cases = {
        (RAY_PARAMETERS, "--require", "MLFLOW_TRACKING_PASSWORD,CLINTRAJ_STORAGE"):
            "missing under /clintraj/ray: CLINTRAJ_STORAGE",
        ("/clintraj/absent",): "no parameters under /clintraj/absent",
        ("/clintraj/ray",): "no command given",
    }
    client.put_parameter(Name="/clintraj/bad/hf-token", Type="SecureString", Value="bad-canary")
    cases[("/clintraj/bad",)] = "parameter /clintraj/bad/hf-token"
    for arguments, message in cases.items():
        command = [] if arguments == ("/clintraj/ray",) else ["--", "true"]
        with pytest.raises(SystemExit) as exited:
            ssm_env.main([*arguments, *command])
        assert message in str(exited.value), exited.value
        assert "canary" not in str(exited.value) + "".join(capsys.readouterr())
    assert not started
    ssm_env.main([RAY_PARAMETERS, "--", "true"])
    assert len(started) == 1 and started[0][1] == ["true"]  # the guard: the same call does start


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
    assert {"README.md", CLUSTER.name, KUBERAY.name, MLFLOW_SH.name, SSM_ENV.name,
            "iam/clintraj-ray-head.json", "iam/clintraj-ray-worker.json"} <= names


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


def test_kuberay_head_takes_no_tasks_and_runs_mlflow_with_auth(kuberay):
    head = _ray_cluster(kuberay)["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    (mlflow,) = [c for c in _containers(head) if c["name"] == "mlflow"]
    # The AWS head's script (its tests below: basic auth, one lean worker), from the image
    assert mlflow["command"] == ["/app/deploy/mlflow-server.sh"] and "args" not in mlflow
    (dockerfile,) = re.findall(r"```dockerfile\n(.*?)```", DEPLOY_README.read_text(), re.S)
    assert re.search(r"COPY .*\bdeploy/mlflow-server\.sh /app/deploy/mlflow-server\.sh\n", dockerfile)
    assert '"mlflow[auth]"' in dockerfile
    assert mlflow["readinessProbe"]["httpGet"]["path"] == "/health"  # the one path that needs no login


def test_kuberay_ray_token_auth_on_every_ray_container(kuberay):
    """KubeRay (>= 1.6) gives containers[0] of every group (its Ray container), the autoscaler and
    the init containers RAY_AUTH_MODE=token and the Secret's token; nothing here may override them."""
    rc = _ray_cluster(kuberay)
    assert rc["spec"]["authOptions"]["mode"] == "token"
    assert rc["spec"]["authOptions"]["secretName"]
    assert tuple(int(part) for part in rc["spec"]["rayVersion"].split(".")) >= (2, 52, 0)
    groups = [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]
    for group in groups:
        containers = _containers(group)
        assert containers[0]["name"] in ("ray-head", "ray-worker"), "the Ray container must come first"
        assert [c["name"] for c in containers[1:]] in ([], ["mlflow"])
        for container in containers + group["template"]["spec"].get("initContainers", []):
            names = {env["name"] for env in container.get("env", [])}
            assert not names & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"}, container["name"]
    assert len(groups) >= 3


def _secret_refs(container: dict) -> set[tuple[str, str]]:
    assert not [f for f in container.get("envFrom", []) if "secretRef" in f], "a whole Secret in the environment"
    return {(env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
            for env in container.get("env", []) if "secretKeyRef" in env.get("valueFrom", {})}


def test_kuberay_each_secret_reaches_only_the_containers_that_use_it(kuberay):
    rc = _ray_cluster(kuberay)
    pods = [rc["spec"]["headGroupSpec"]["template"]["spec"]] + [
        group["template"]["spec"] for group in rc["spec"]["workerGroupSpecs"]]
    checked = 0
    for pod in pods:
        assert not [v for v in pod["volumes"] if "secret" in v or "projected" in v], "a Secret mounted as files"
        for container in pod["containers"]:
            secrets = {name for name, _ in _secret_refs(container)}
            assert secrets == ({"clintraj-mlflow-server"} if container["name"] == "mlflow" else {"clintraj-jobs"}), \
                container["name"]
            checked += 1
    # The Ray containers run any job's code: they must not see the mlflow container's processes.
    assert not pods[0].get("shareProcessNamespace")
    assert checked == len(pods) + 1  # every Ray container and the mlflow one


def test_kuberay_network_policy_admits_only_the_clusters_own_pods(kuberay):
    rc = _ray_cluster(kuberay)
    own = {"ray.io/cluster": rc["metadata"]["name"]}  # KubeRay labels every pod of the cluster with it
    (policy,) = [d for d in kuberay if d.get("kind") == "NetworkPolicy"]
    spec = policy["spec"]
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert spec["podSelector"] == {"matchLabels": own}
    assert "Ingress" in spec["policyTypes"]
    assert spec["ingress"], "no rule at all would cut the cluster's pods off each other"
    for rule in spec["ingress"]:
        assert rule.get("from"), "a rule without `from` admits every source"
        for peer in rule["from"]:  # no namespaceSelector (other namespaces), no ipBlock
            assert peer == {"podSelector": {"matchLabels": own}}, peer


def test_kuberay_binds_all_interfaces_only_behind_the_network_policy(kuberay):
    rc = _ray_cluster(kuberay)
    head = rc["spec"]["headGroupSpec"]
    # Left out, KubeRay would set dashboard-host 0.0.0.0: the job API on the pod's address
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    (mlflow,) = [c for c in _containers(head) if c["name"] == "mlflow"]
    env = {e["name"]: e.get("value") for e in mlflow["env"]}
    assert env["MLFLOW_HOST"] == "0.0.0.0"  # for the workers, so the policy must cover the head pod
    (policy,) = [d for d in kuberay if d.get("kind") == "NetworkPolicy"]
    head_pod_labels = {"ray.io/cluster": rc["metadata"]["name"], "ray.io/node-type": "head"}
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= head_pod_labels.items()
    # MLflow answers only listed Host headers: the Ray pods' (the Service) and port-forward's
    (service,) = [d for d in kuberay if d.get("kind") == "Service"]
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert f"{service['metadata']['name']}:{service['spec']['ports'][0]['port']}" in allowed
    assert "localhost:*" in allowed and "*" not in allowed


def test_kuberay_head_service_exposes_what_the_readme_says(kuberay):
    """KubeRay builds the head Service from the Ray container's ports, adding metrics (8080); with
    none listed it would expose its defaults, Ray Client (10001) and the dashboard (8265) among them."""
    rc = _ray_cluster(kuberay)
    ray_head = _containers(rc["spec"]["headGroupSpec"])[0]
    assert ray_head["ports"]
    head_ports = {port.get("name"): port["containerPort"] for port in ray_head["ports"]}
    head_ports.setdefault("metrics", 8080)
    exposed = {(f"{rc['metadata']['name']}-head-svc", port) for port in head_ports.values()}
    exposed |= {(service["metadata"]["name"], port["port"])
                for service in kuberay if service.get("kind") == "Service" for port in service["spec"]["ports"]}
    documented = {(found[1], int(found[2])) for row in _readme_rows()
                  if (found := re.match(r"\| `(clintraj-[\w-]+)` \| (\d+) \|", row))}
    assert exposed == documented
    assert not {8265, 10001} & {port for _, port in exposed}


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
    sensitive = {"MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACT_ROOT", "MLFLOW_AUTH_DATABASE_URI", "PGPASSWORD",
                 "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY",
                 "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "CLINTRAJ_STORAGE", "HF_TOKEN"}
    seen = set()
    for group in [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]:
        for container in _containers(group):
            for env in container.get("env", []):
                if env["name"] in sensitive:
                    assert "value" not in env, f"{env['name']} has a literal value"
                    assert env["valueFrom"]["secretKeyRef"]["name"], env["name"]
                    seen.add(env["name"])
    assert seen == sensitive


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
    ray_containers = [_containers(rc["spec"]["headGroupSpec"])[0]]
    for group in rc["spec"]["workerGroupSpecs"]:
        (worker,) = _containers(group)
        ray_containers.append(worker)
    for container in ray_containers:  # drivers (on the head) and trials log, as the jobs' MLflow user
        assert {"name": "MLFLOW_TRACKING_URI", "value": uri} in container["env"]
        login = {key for name, key in _secret_refs(container) if name == "clintraj-jobs"}
        assert {"mlflow-username", "mlflow-password"} <= login, container["name"]


def test_deploy_readme_says_who_reads_every_secret(kuberay, cluster):
    """Each Secret key the manifest references, and each SSM parameter the nodes read, has a row
    in deploy/README.md's tables naming where it lives."""
    rows = _readme_rows()
    documented = lambda *tokens: any(all(f"`{t}`" in row for t in tokens) for row in rows)  # noqa: E731
    rc = _ray_cluster(kuberay)
    references = {(rc["spec"]["authOptions"]["secretName"], "auth_token")}
    for group in [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]:
        for container in _containers(group):
            references |= _secret_refs(container)
    assert len(references) >= 12
    for name, key in sorted(references):
        assert documented(name, key), f"deploy/README.md: no row for Secret {name} key {key}"
    server = re.search(r"settings=\(([^)]*)\)", MLFLOW_SH.read_text()).group(1).split() + ["PGPASSWORD"]
    (start,) = [c for c in cluster["worker_start_ray_commands"] if "ray start" in c]
    ray = re.search(r"--require (\S+)", start).group(1).split(",") + ["HF_TOKEN", "CLINTRAJ_STORAGE", "CLINTRAJ_EFS"]
    for names, path in ((server, MLFLOW_SERVER_PARAMETERS), (ray, RAY_PARAMETERS)):
        for name in names:
            assert documented(name, path), f"deploy/README.md: no row for {path}/{name}"


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

ADMIN_PASSWORD = "admin-canary-4d1e"
FLASK_KEY = "csrf-canary-0a9b"


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


def _server_settings(tmp_path: Path) -> dict:
    """Every setting mlflow-server.sh requires, as the head's SSM parameters or the Secret give them."""
    return {"MLFLOW_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/store/mlflow.db",
            "MLFLOW_AUTH_DATABASE_URI": f"sqlite:///{tmp_path}/store/basic_auth.db",
            "MLFLOW_ARTIFACT_ROOT": "s3://bucket/mlflow", "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
            "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": FLASK_KEY}


def test_mlflow_script_is_executable():
    assert MLFLOW_SH.stat().st_mode & stat.S_IXUSR
    assert MLFLOW_SH.read_text().startswith("#!/usr/bin/env bash\n")


def test_mlflow_script_fails_clearly_without_its_settings(tmp_path):
    bin_dir, record = _fake_mlflow(tmp_path)
    for env in ({}, {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}):
        for args in ([], ["--background"]):
            done = subprocess.run([str(MLFLOW_SH), *args], env=env, capture_output=True, text=True, timeout=30)
            assert done.returncode != 0
            for name in _server_settings(tmp_path):
                assert name in done.stderr, done.stderr
            assert "not started" in done.stderr
            assert not record.exists(), "mlflow was started without its settings"
    assert not (tmp_path / "mlflow-server.pid").exists()


def test_mlflow_script_names_only_what_is_missing(tmp_path):
    bin_dir, record = _fake_mlflow(tmp_path)
    for missing in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        settings = _server_settings(tmp_path)
        del settings[missing]
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), **settings}
        done = subprocess.run([str(MLFLOW_SH)], env=env, capture_output=True, text=True, timeout=30)
        assert done.returncode != 0
        assert done.stderr.splitlines()[0] == f"mlflow-server.sh: not set: {missing}."
        assert ADMIN_PASSWORD not in done.stderr and FLASK_KEY not in done.stderr
        assert not record.exists()


def test_mlflow_script_reads_no_settings_file(tmp_path):
    """Settings come from the environment only: a file of them is what reached every node before."""
    bin_dir, record = _fake_mlflow(tmp_path)
    (tmp_path / ".clintraj.env").write_text(
        "".join(f"{name}={value}\n" for name, value in _server_settings(tmp_path).items()))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([str(MLFLOW_SH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "not started" in done.stderr
    assert not record.exists()


@pytest.mark.parametrize("name", ["MLFLOW_BACKEND_STORE_URI", "MLFLOW_AUTH_DATABASE_URI"])
def test_mlflow_script_refuses_a_password_in_a_store_uri(tmp_path, name):
    bin_dir, record = _fake_mlflow(tmp_path)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), **_server_settings(tmp_path),
           name: "postgresql://mlflow:secret@db:5432/mlflow"}
    done = subprocess.run([str(MLFLOW_SH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "PGPASSWORD" in done.stderr and name in done.stderr
    assert "secret" not in done.stderr + done.stdout
    assert not record.exists()


def test_mlflow_script_starts_basic_auth_with_one_lean_worker_on_loopback(tmp_path, monkeypatch):
    bin_dir, record = _fake_mlflow(tmp_path)
    auth_database = "postgresql://mlflow@db:5432/mlflow%5Fauth"  # '%' is configparser's interpolation
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), **_server_settings(tmp_path),
           "MLFLOW_AUTH_DATABASE_URI": auth_database, "PGPASSWORD": "store-canary-77aa"}
    done = subprocess.run([str(MLFLOW_SH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    called = json.loads(record.read_text())
    argv = called["argv"]
    assert argv[0] == "server"
    option = lambda name: argv[argv.index(name) + 1]  # noqa: E731
    assert option("--app-name") == "basic-auth"
    assert option("--backend-store-uri") == env["MLFLOW_BACKEND_STORE_URI"]
    assert option("--artifacts-destination") == "s3://bucket/mlflow"
    assert option("--host") == "127.0.0.1"
    assert option("--port") == "5000"
    assert option("--workers") == "1"
    assert called["env"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert (tmp_path / "store").is_dir(), "the sqlite store's folder is created"
    # The auth app's config as mlflow reads it: the user store and READ by default from the file,
    # the admin from the environment. The file holds no secret and only its owner may read it.
    config_path = Path(called["env"]["MLFLOW_AUTH_CONFIG_PATH"])
    assert config_path.parent == tmp_path and stat.S_IMODE(config_path.stat().st_mode) == 0o600
    text = config_path.read_text()
    assert not [value for value in (ADMIN_PASSWORD, FLASK_KEY, "store-canary-77aa") if value in text]
    for name in ("MLFLOW_AUTH_CONFIG_PATH", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.setenv(name, called["env"][name])
    config = _mlflow_auth_config_module().read_auth_config()
    assert config.database_uri == auth_database
    assert config.default_permission == "READ"
    assert (config.admin_username, config.admin_password) == ("admin", ADMIN_PASSWORD)


def _mlflow_auth_config_module():
    """mlflow.server.auth.config, loaded from its file: importing it as a module would import the
    whole server (mlflow.server and the auth app, ~10 s) for one small reader."""
    import importlib.util

    import mlflow

    path = Path(mlflow.__file__).parent / "server" / "auth" / "config.py"
    spec = importlib.util.spec_from_file_location("mlflow_auth_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _status(url: str, login: tuple[str, str] | None = None) -> int:
    import base64

    request = urllib.request.Request(url)
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
# get_app_client imports mlflow.server, whose own imports warn (sqlalchemy's noload, starlette's wsgi)
@pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")
@pytest.mark.filterwarnings("ignore:starlette.middleware.wsgi is deprecated:UserWarning")
def test_mlflow_script_serves_with_basic_auth_in_the_background_and_stops(tmp_path, monkeypatch):
    """The real server, as the head starts it: detached, healthy, refusing every request without a
    login (the artifact proxy included), serving the jobs' user once the admin created it, stoppable."""
    import socket

    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client
    from mlflow.tracking import MlflowClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env = {**inherited, "HOME": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           **_server_settings(tmp_path), "MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"), "MLFLOW_PORT": str(port)}
    pid_file = tmp_path / "mlflow-server.pid"
    base = f"http://127.0.0.1:{port}"
    jobs = ("clintraj-jobs", "jobs-canary-2c8d")
    try:
        done = subprocess.run([str(MLFLOW_SH), "--background"], env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        pid = int(pid_file.read_text())
        search = base + "/api/2.0/mlflow/experiments/search?max_results=1"
        assert _status(base + "/health") == 200
        for url in (search, base + "/api/2.0/mlflow-artifacts/artifacts/0/run/artifacts/a.txt", base + "/"):
            assert _status(url) == 401, url
        assert _status(search, ("admin", "wrong")) == 401
        assert _status(search, ("admin", ADMIN_PASSWORD)) == 200
        # deploy/README.md, "MLflow users": the admin creates the jobs' user
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        admin = get_app_client("basic-auth", tracking_uri=base)
        admin.create_user(*jobs)
        someone_elses = MlflowClient(base).create_experiment("made-by-the-admin")
        # The jobs log as that user, through the server's artifact proxy ...
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", jobs[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", jobs[1])
        client = MlflowClient(base)
        experiment = client.create_experiment("deploy-check")
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, "x", 1.0)
        client.log_text(run.info.run_id, "hello", "a.txt")
        assert [m.value for m in client.get_metric_history(run.info.run_id, "x")] == [1.0]
        assert [p.read_text() for p in (tmp_path / "artifacts").rglob("a.txt")] == ["hello"]
        artifact = f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run.info.run_id}/artifacts/a.txt"
        assert (_status(artifact), _status(artifact, jobs)) == (401, 200)
        # ... may write someone else's experiment only once granted, and may not manage users
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
            client.create_run(someone_elses)
        with pytest.raises(MlflowException, match="PERMISSION_DENIED|Permission denied"):
            get_app_client("basic-auth", tracking_uri=base).create_user("someone", "pw-0123456789")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
        admin.grant_user_permission(jobs[0], "experiment", someone_elses, "EDIT")
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", jobs[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", jobs[1])
        assert client.create_run(someone_elses).info.experiment_id == someone_elses
    finally:
        subprocess.run([str(MLFLOW_SH), "--stop"], env=env, capture_output=True, timeout=60)
    assert not pid_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    log = (tmp_path / "mlflow-server.log").read_text()
    assert "Created admin user" in log
    assert not [value for value in (ADMIN_PASSWORD, FLASK_KEY, jobs[1]) if value in log]


# --- the shared work folder -------------------------------------------------------------------


def test_nodes_mount_the_shared_work_folder_the_ray_parameters_name(cluster):
    mount = [c for c in cluster["setup_commands"] if "/mnt/shared" in c]
    assert len(mount) == 1, "one setup command mounts the shared work folder"
    command = mount[0]
    assert "CLINTRAJ_EFS" in command and _ssm_paths(command) == [RAY_PARAMETERS] and "nfs4" in command
    assert "mountpoint -q /mnt/shared" in command  # idempotent: `ray up` reruns it
    assert '[ -z "$CLINTRAJ_EFS" ]' in command  # unset: nothing mounted, the node still comes up
    assert "/clintraj/ray/CLINTRAJ_EFS" in DEPLOY_README.read_text()


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
