"""`make local`: the MLflow task (nginx + MLflow) on this machine, to try out.

Same entrypoints and nginx config as the images, in either auth mode
(`--auth-mode shared|accounts|sso`; `make local AUTH_MODE=sso` adds a local
OpenID provider with a test admin and user, whose logins it prints).
PostgreSQL stands in for Aurora (SQLite if the Debian package is missing) and
moto's S3 for the artifact bucket: MLflow serves the artifacts, large ones go
between client and that S3 through presigned URLs, as deployed. The database
and the bucket's objects persist in .local-run/ between runs (the objects are
saved when the stack stops). The password printed (the shared user, or the
admin in accounts mode) is new each run. Ctrl-C stops everything, as does
SIGTERM or SIGHUP, at any moment, a second signal included; the run's
servers are recorded in .local-run/processes.json, and a run that finds
an earlier one's still alive (after a hard kill) stops them first.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import socket
import sys
import time
from pathlib import Path

from localrun.gc import SETTINGS_FILE, save_settings
from localrun.oidc import OidcUser
from localrun.process import LOOPBACK, STOP, ProcessRecord, ServiceError, free_port, record_children, write_private
from localrun.services import REPO_ROOT, MotoServer
from localrun.stack import (
    SSO_ADMIN_GROUP,
    SSO_ALLOWED_GROUP,
    MlflowStack,
    artifact_transfer_settings,
    new_password,
)
from stacks.auth_modes import AUTH_MODES, DEFAULT_AUTH_MODE, needs_of, parse_mode

STATE_DIR = REPO_ROOT / ".local-run"
BUCKET = "mlflow-artifacts-local"


def preferred_port(port: int) -> int:
    """`port` if it is free on loopback, otherwise any free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
            return port
        except OSError:
            return free_port()


def local_state(state_dir: Path) -> dict[str, str]:
    """Secrets that must outlive a run (the database's, the Flask key), in a private file."""
    state_file = state_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    fresh = {
        "db_superuser_password": lambda: new_password(),
        "flask_secret_key": lambda: secrets.token_hex(32),
    }
    if missing := [key for key in fresh if key not in state]:
        state |= {key: fresh[key]() for key in missing}
        state_file.touch(mode=0o600)
        state_file.write_text(json.dumps(state))
    return state


LOCAL_SSO_USERS = [
    OidcUser("admin", "admin-Passw0rd", "admin@example.com", "Local admin", (SSO_ADMIN_GROUP,)),
    OidcUser("user", "user-Passw0rd", "user@example.com", "Local user", (SSO_ALLOWED_GROUP,)),
]
LOCAL_MACHINE_CLIENT = "local-code"
# IAM sign-in: a role of moto's account that signs in as the local admin (accounts mode) or the
# local app client's machine user (sso mode), for trying nginx's IAM server (the URL the banner
# prints) with the caller header a stand-in for API Gateway's IAM route writes.
LOCAL_IAM_ROLE = "arn:aws:iam::123456789012:role/mlflow-local"


def local_iam_user(auth_mode: str) -> str:
    """The MLflow user LOCAL_IAM_ROLE signs in as: one the mode's app knows."""
    return LOCAL_MACHINE_CLIENT if needs_of(auth_mode).sign_in_provider else MlflowStack.username


def sso_banner(stack: MlflowStack) -> str:
    assert stack.oidc is not None
    client = stack.oidc.clients[LOCAL_MACHINE_CLIENT]
    people = "".join(f"  {u.username} / {u.password}  ({u.email}, group {u.groups[0]})\n" for u in LOCAL_SSO_USERS)
    return (
        f"\nMLflow is up at {stack.proxy_url} (auth mode sso)\n"
        f"Open it in a browser and sign in at the local OpenID provider ({stack.oidc.issuer}) as:\n{people}"
        f"  artifacts: {stack.artifacts_destination} on the local S3 at {stack.moto_endpoint}\n\n"
        f"For code, a token of app client {client.client_id} (MLflow user {client.client_id}):\n"
        f"  export MLFLOW_TRACKING_URI={stack.proxy_url}\n"
        f"  export MLFLOW_TRACKING_TOKEN=$(curl -s -u {client.client_id}:{client.client_secret} "
        f"-d grant_type=client_credentials -d scope=mlflow {stack.oidc.token_url} | python3 -c "
        "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')\n\n"
        f"{iam_banner(stack)}"
        "Press Ctrl-C to stop."
    )


def banner(stack: MlflowStack) -> str:
    needs = needs_of(stack.auth_mode)
    if needs.sign_in_provider:
        return sso_banner(stack)
    who = "admin (MLflow's auth app)" if needs.admin_login else "the one user (nginx basic auth)"
    settings = "".join(f"  export {name}={value}\n" for name, value in artifact_transfer_settings().items())
    return (
        f"\nMLflow is up at {stack.proxy_url} (auth mode {stack.auth_mode})\n"
        f"  {who}\n"
        f"  username: {stack.username}\n"
        f"  password: {stack.password}\n"
        f"  artifacts: {stack.artifacts_destination} on the local S3 at {stack.moto_endpoint}\n\n"
        "For the mlflow client:\n"
        f"  export MLFLOW_TRACKING_URI={stack.proxy_url}\n"
        f"  export MLFLOW_TRACKING_USERNAME={stack.username}\n"
        f"  export MLFLOW_TRACKING_PASSWORD='{stack.password}'\n"
        f"{settings}\n"
        f"{iam_banner(stack)}"
        "Press Ctrl-C to stop."
    )


def iam_banner(stack: MlflowStack) -> str:
    """Where signed clients go, and a 0600 file with keys of a session of LOCAL_IAM_ROLE (no secret printed)."""
    if stack.iam_url is None:
        return ""
    env_file = stack.root / "iam" / "mlflow-local.env"
    lines = "".join(f"{name}={shlex.quote(value)}\n" for name, value in stack.signed_client_env(LOCAL_IAM_ROLE).items())
    write_private(env_file, lines)
    return (
        f"IAM sign-in: signed requests at {stack.iam_url} (a stand-in for the IAM API: it checks SigV4\n"
        f"as API Gateway does and hands nginx's IAM server at {stack.iam_proxy_url} the caller).\n"
        f"{LOCAL_IAM_ROLE} (and its sessions) signs in as {local_iam_user(stack.auth_mode)}; Studio profiles'\n"
        f"parameters under {stack.iam_principals_path}. A session's keys, for the mlflow client:\n"
        f"  set -a; . {env_file}; set +a\n\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="proxy port, if free")
    parser.add_argument("--workers", type=int, default=None, help="MLflow workers (default 2)")
    parser.add_argument(
        "--auth-mode", default=DEFAULT_AUTH_MODE, help=f"one of {', '.join(AUTH_MODES)} (default {DEFAULT_AUTH_MODE})"
    )
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR, help="where data persists (default .local-run)")
    parser.add_argument(
        "--ai-gateway", choices=("true", "false"), default="false",
        help="MLflow's AI gateway, as the stack's ai_gateway setting (default false)",
    )  # fmt: skip
    args = parser.parse_args()
    try:
        parse_mode(args.auth_mode)
    except ValueError as error:
        parser.error(f"--auth-mode {error}")

    state_dir = args.state_dir.absolute()
    state_dir.mkdir(parents=True, exist_ok=True)
    # Run as root, PostgreSQL runs as `nobody` and must pass through to its
    # data directory: others may traverse the state dir (not list it); what
    # is inside keeps its own private modes.
    state_dir.chmod(0o711)
    state = local_state(state_dir)
    moto = MotoServer(log_dir=state_dir / "logs")
    stack = MlflowStack(
        state_dir, moto=moto, auth_mode=args.auth_mode, durable=True, sqlite_fallback=True,
        workers=args.workers, db_superuser_password=state["db_superuser_password"],
        secret_key=state["flask_secret_key"], proxy_port=preferred_port(args.port), bucket=BUCKET,
        oidc_users=LOCAL_SSO_USERS, machine_clients=[LOCAL_MACHINE_CLIENT], ai_gateway=args.ai_gateway == "true",
        iam_principals={LOCAL_IAM_ROLE: local_iam_user(args.auth_mode)},
    )  # fmt: skip
    saved_objects = state_dir / "s3" / BUCKET
    backend = "PostgreSQL" if stack.postgres else "SQLite (install 'postgresql' for PostgreSQL)"
    print(
        f"Starting nginx + MLflow ({backend}) in {args.auth_mode} mode, logs in {stack.log_dir}, "
        f"audit lines in {stack.audit_log} ...",
        flush=True,
    )
    restored = False
    record = ProcessRecord(state_dir / "processes.json")
    try:
        # From here on any stop signal ends in the clean-up below, which runs to its end.
        STOP.install()
        if leftovers := record.stop_leftovers():
            say(f"Stopped what an earlier run left running: {', '.join(leftovers)}")
        record_children(record)
        moto.start()
        moto.create_bucket(BUCKET)
        moto.restore_bucket(BUCKET, saved_objects)
        restored = True
        stack.start()
        # For `make gc` while this runs.
        save_settings(state_dir, stack.server_env())
        say(banner(stack))
        servers = [stack.mlflow.process, stack.nginx.process, moto.process]
        servers += [stack.oidc.process] if stack.oidc else []
        while all(p.running for p in servers):
            time.sleep(1)
        STOP.settle()
        say(f"A server exited unexpectedly; see {stack.log_dir}", error=True)
        return 1
    except ServiceError as error:
        STOP.settle()
        say(f"could not start: {error}", error=True)
        return 1
    except KeyboardInterrupt:
        STOP.settle()
        say("\nStopping ...")
        return 0
    finally:
        (state_dir / SETTINGS_FILE).unlink(missing_ok=True)
        try:
            STOP.settle()
        finally:
            clean_up(stack, moto, record, saved_objects if restored else None)


def say(text: str, *, error: bool = False) -> None:
    """Print, unless the terminal is gone (SIGHUP): the clean-up goes on regardless."""
    try:
        print(text, file=sys.stderr if error else sys.stdout, flush=True)
    except OSError:
        pass


def clean_up(stack: MlflowStack, moto: MotoServer, record: ProcessRecord, saved_objects: Path | None) -> None:
    """Stop everything; save the bucket's objects first when they were all restored at start."""
    try:
        stack.stop()
        if saved_objects is not None and moto.running:
            count = moto.save_bucket(BUCKET, saved_objects)
            say(f"Saved {count} artifact objects to {saved_objects}")
    finally:
        moto.stop()
        record_children(None)
        record.close()
        say("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
