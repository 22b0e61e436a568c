#!/usr/bin/env bash
# The cluster's MLflow tracking server, with MLflow's basic-auth app: every request but /health
# needs a user name and password, artifact downloads and uploads through the server included.
#
#   deploy/mlflow-server.sh               run in the foreground (the KubeRay container; Ctrl-C stops it)
#   deploy/mlflow-server.sh --background  (re)start it detached, wait until it answers /health (the AWS head)
#   deploy/mlflow-server.sh --stop        stop the detached server
#
# Settings come from the environment only, never from a file: on the AWS head deploy/ssm_env.py
# reads them from SSM Parameter Store (/clintraj/mlflow-server), on KubeRay the clintraj-mlflow-server
# Secret holds them. deploy/README.md says who can read each one.
#   MLFLOW_BACKEND_STORE_URI        the SQL store: postgresql://mlflow@HOST:5432/mlflow (password in
#                                   PGPASSWORD, never in the URI) or sqlite:////home/ubuntu/mlflow/mlflow.db
#   MLFLOW_ARTIFACT_ROOT            where artifacts go, e.g. s3://BUCKET/mlflow. The server proxies them
#                                   (clients need no S3 access; this server's role does).
#   MLFLOW_AUTH_DATABASE_URI        the auth app's user store, e.g. postgresql://mlflow@HOST:5432/mlflow_auth
#                                   or sqlite:////home/ubuntu/mlflow/basic_auth.db (passwords kept hashed)
#   MLFLOW_AUTH_ADMIN_USERNAME, MLFLOW_AUTH_ADMIN_PASSWORD
#                                   the admin the first start creates (MLflow's own variables)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  signs the UI's CSRF tokens (MLflow's own variable)
#   PGPASSWORD                      with Postgres: the password libpq uses for both stores
#   MLFLOW_AUTH_DEFAULT_PERMISSION  what a signed-in user may do where nobody granted more (default READ)
#   MLFLOW_HOST                     interface to bind (default 127.0.0.1; the cluster configs set 0.0.0.0)
#   MLFLOW_PORT                     default 5000
# MLFLOW_SERVER_ALLOWED_HOSTS (MLflow's own) lists the Host headers the server answers; its default
# is loopback and private IP addresses, so a server reached by a DNS name (KubeRay) must set it.
set -euo pipefail

state_dir="${HOME:-/tmp}"
pid_file="$state_dir/mlflow-server.pid"
log_file="$state_dir/mlflow-server.log"
auth_config="$state_dir/mlflow-basic-auth.ini"
host="${MLFLOW_HOST:-127.0.0.1}"
port="${MLFLOW_PORT:-5000}"

healthy() {
    local url="http://$1:$port/health"
    if command -v curl >/dev/null; then
        curl -fsS -o /dev/null "$url" 2>/dev/null
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" 2>/dev/null
    fi
}

stop_server() {
    [[ -f "$pid_file" ]] || return 0
    local pid
    pid="$(cat "$pid_file")"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        echo "mlflow-server.sh: stopping the server (process group $pid)"
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    fi
    rm -f "$pid_file"
}

if [[ "${1:-}" == "--stop" ]]; then
    stop_server
    exit 0
fi

settings=(MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACT_ROOT MLFLOW_AUTH_DATABASE_URI
    MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY)
missing=()
for name in "${settings[@]}"; do
    [[ -n "${!name:-}" ]] || missing+=("$name")
done
if ((${#missing[@]})); then
    {
        echo "mlflow-server.sh: not set: ${missing[*]}."
        echo "  On the AWS head they are SSM parameters under /clintraj/mlflow-server, e.g."
        echo "    aws ssm put-parameter --name /clintraj/mlflow-server/${missing[0]} --type SecureString --value ..."
        echo "  then \`ray up deploy/ray-cluster.yaml\` again; on KubeRay, keys of the clintraj-mlflow-server"
        echo "  Secret (deploy/README.md). The server was not started."
    } >&2
    exit 2
fi
for name in MLFLOW_BACKEND_STORE_URI MLFLOW_AUTH_DATABASE_URI; do
    if [[ "${!name}" =~ ://[^/@]*:[^/@]*@ ]]; then
        echo "mlflow-server.sh: $name carries a password; put it in PGPASSWORD instead." >&2
        exit 2
    fi
    if [[ "${!name}" == sqlite:////* ]]; then
        db="${!name#sqlite:///}"
        mkdir -p "$(dirname "$db")"
    fi
done

if [[ "${1:-}" == "--background" ]]; then
    stop_server
    # setsid: its own session and process group, so it outlives the SSH session that started it
    # and --stop can end the server and its workers together.
    setsid "$0" </dev/null >"$log_file" 2>&1 &
    pid=$!
    echo "$pid" >"$pid_file"
    probe_host="$host"
    [[ "$probe_host" == "0.0.0.0" ]] && probe_host=127.0.0.1
    for _ in $(seq 90); do
        if healthy "$probe_host"; then
            echo "mlflow-server.sh: MLflow is up on $host:$port with basic auth (pid $pid, log $log_file)"
            exit 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "mlflow-server.sh: the server exited; the end of $log_file:" >&2
            tail -n 30 "$log_file" >&2
            exit 1
        fi
        sleep 1
    done
    echo "mlflow-server.sh: no answer on $probe_host:$port/health after 90 s; see $log_file" >&2
    exit 1
fi

# The auth app's configuration file holds no secret: the admin's credentials and the Postgres
# password stay in the environment. configparser reads '%' as interpolation, hence '%%'.
(
    umask 077
    printf '[mlflow]\ndefault_permission = %s\ndatabase_uri = %s\n' \
        "${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}" "${MLFLOW_AUTH_DATABASE_URI//%/%%}" >"$auth_config"
)
export MLFLOW_AUTH_CONFIG_PATH="$auth_config"
# One uvicorn worker and no job runner: ~0.5 GiB instead of ~2.3 GiB on the head.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec mlflow server \
    --app-name basic-auth \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --artifacts-destination "$MLFLOW_ARTIFACT_ROOT" \
    --serve-artifacts \
    --host "$host" \
    --port "$port" \
    --workers 1
