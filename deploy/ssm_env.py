#!/usr/bin/env python3
"""Run a command with the SSM Parameter Store parameters under one path added to its environment.

    ssm_env.py PATH [--require NAME,NAME...] -- COMMAND [ARG...]

Each parameter directly under PATH becomes the variable its last segment names
(/clintraj/ray/HF_TOKEN -> HF_TOKEN); SecureString values are decrypted, and a parameter wins over
a variable of the same name already set. This process then becomes COMMAND (exec), so the values
live only in that command's environment and its children's: never in a file, an argument list
(`ps` shows those), stdout or a log line. Errors name parameters, never values.

Which node may read which path is decided by the node's IAM role (deploy/iam/): the head reads
/clintraj/ray and /clintraj/mlflow-server, a GPU worker /clintraj/ray only. Region and credentials
come the usual way (on a node: the instance role, and the region from instance metadata).
"""

import os
import re
import sys

USAGE = "usage: ssm_env.py PATH [--require NAME,NAME...] -- COMMAND [ARG...]"
VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*")


def fail(message: str) -> None:
    sys.exit(f"ssm_env.py: {message}")


def parse(argv: list[str]) -> tuple[str, list[str], list[str]]:
    if "--" not in argv:
        fail(f"no command given\n{USAGE}")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    required = []
    if len(options) == 3 and options[1] == "--require":
        required = [name for name in options[2].split(",") if name]
        options = options[:1]
    if len(options) != 1 or not options[0].startswith("/") or not command:
        fail(USAGE)
    return options[0].rstrip("/") or "/", required, command


def parameters(path: str) -> dict[str, str]:
    """{variable name: value} of the parameters directly under `path`, decrypted."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    found = {}
    try:
        pages = boto3.client("ssm").get_paginator("get_parameters_by_path").paginate(
            Path=path, Recursive=False, WithDecryption=True)
        for page in pages:
            for parameter in page["Parameters"]:
                name = parameter["Name"].rsplit("/", 1)[-1]
                if not VARIABLE.fullmatch(name):
                    fail(f"parameter {parameter['Name']}: its last segment must be an environment "
                         f"variable name (A-Z, 0-9, _), e.g. {path}/HF_TOKEN")
                found[name] = parameter["Value"]
    except (BotoCoreError, ClientError) as error:  # messages carry names and ARNs, never values
        fail(f"cannot read the parameters under {path}: {error}")
    return found


def main(argv: list[str]) -> None:
    path, required, command = parse(argv)
    found = parameters(path)
    if not found:
        fail(f"no parameters under {path}: create them first (deploy/README.md); nothing was started")
    missing = [name for name in required if name not in found]
    if missing:
        fail(f"missing under {path}: {', '.join(missing)} (deploy/README.md); nothing was started")
    try:
        os.execvpe(command[0], command, {**os.environ, **found})
    except OSError as error:
        fail(f"cannot run {command[0]}: {error.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
