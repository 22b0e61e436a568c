#!/usr/bin/env bash
# The MLflow tracking server of the Ray head node (deploy/ray-cluster.yaml starts it).
#
#   deploy/mlflow-server.sh               run in the foreground (Ctrl-C stops it)
#   deploy/mlflow-server.sh --background  (re)start it detached, wait until it answers /health
#   deploy/mlflow-server.sh --stop        stop the detached server
#
# Settings come from ~/.clintraj.env (or $CLINTRAJ_ENV_FILE) when present; the environment wins:
#   MLFLOW_BACKEND_STORE_URI  the SQL store, e.g. postgresql://mlflow@HOST:5432/mlflow (password in
#                             PGPASSWORD, never in the URI) or sqlite:////home/ubuntu/mlflow/mlflow.db
#   MLFLOW_ARTIFACT_ROOT      where artifacts go, e.g. s3://BUCKET/mlflow. The server proxies them
#                             (clients need no S3 access; the head's instance role does).
#   MLFLOW_HOST               interface to bind (default 127.0.0.1; the cluster config sets 0.0.0.0)
#   MLFLOW_PORT               default 5000
set -euo pipefail

env_file="${CLINTRAJ_ENV_FILE:-${HOME:-/nonexistent}/.clintraj.env}"
if [[ -f "$env_file" ]]; then
    keep="$(declare -p MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACT_ROOT MLFLOW_HOST MLFLOW_PORT 2>/dev/null || true)"
    set -a
    # shellcheck disable=SC1090
    . "$env_file"
    set +a
    eval "$keep"
fi

state_dir="${HOME:-/tmp}"
pid_file="$state_dir/mlflow-server.pid"
log_file="$state_dir/mlflow-server.log"
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

missing=()
[[ -n "${MLFLOW_BACKEND_STORE_URI:-}" ]] || missing+=(MLFLOW_BACKEND_STORE_URI)
[[ -n "${MLFLOW_ARTIFACT_ROOT:-}" ]] || missing+=(MLFLOW_ARTIFACT_ROOT)
if ((${#missing[@]})); then
    {
        echo "mlflow-server.sh: not set: ${missing[*]}."
        echo "  Put them in $env_file (KEY=value lines; see deploy/README.md), e.g."
        echo "    MLFLOW_BACKEND_STORE_URI=postgresql://mlflow@DB-HOST:5432/mlflow"
        echo "    MLFLOW_ARTIFACT_ROOT=s3://YOUR-BUCKET/mlflow"
        echo "  then run \`ray up deploy/ray-cluster.yaml\` again. The server was not started."
    } >&2
    exit 2
fi
if [[ "$MLFLOW_BACKEND_STORE_URI" =~ ://[^/@]*:[^/@]*@ ]]; then
    echo "mlflow-server.sh: MLFLOW_BACKEND_STORE_URI carries a password; put it in PGPASSWORD instead." >&2
    exit 2
fi
if [[ "$MLFLOW_BACKEND_STORE_URI" == sqlite:////* ]]; then
    db="${MLFLOW_BACKEND_STORE_URI#sqlite:///}"
    mkdir -p "$(dirname "$db")"
fi

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
            echo "mlflow-server.sh: MLflow is up on $host:$port (pid $pid, log $log_file)"
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

# One uvicorn worker and no job runner: ~0.5 GiB instead of ~2.3 GiB on the head.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
exec mlflow server \
    --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
    --artifacts-destination "$MLFLOW_ARTIFACT_ROOT" \
    --serve-artifacts \
    --host "$host" \
    --port "$port" \
    --workers 1
