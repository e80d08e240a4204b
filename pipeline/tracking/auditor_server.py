"""``make mlflow-ui``: the MLflow UI for auditors, read-only, on 127.0.0.1.

MLflow's own authentication app (``mlflow server --app-name basic-auth``) with
``default_permission = READ`` and its own user database under the MLflow root, holding a
non-admin ``auditor`` user: the auditor reads every experiment, run, artifact and registered
model and changes nothing (a write answers 403). An ``admin`` user exists too, because the app
needs one; the project's commands never go through the server (they write the store directly).

On the first start the passwords are taken from ``OUTREACH_AUDITOR_PASSWORD`` and
``MLFLOW_AUTH_ADMIN_PASSWORD`` when set, else generated, and kept in
``<MLflow root>/auth/credentials.json`` (mode 0600, in a 0700 folder; never committed:
``outputs/`` is ignored); the auditor's is printed once. Later starts reuse them.

    python -m pipeline.tracking.auditor_server --root outputs/mlflow --port 5000

Pure parts (:func:`auth_ini`, :func:`server_command`, :func:`server_env`) build text and
arguments; :func:`prepare` writes the auth folder and users; :func:`main` runs the server.
"""

from __future__ import annotations

import argparse
import configparser
import io
import json
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

AUTH_FOLDER = "auth"
AUTH_INI = "basic_auth.ini"
AUTH_DB = "basic_auth.db"
CREDENTIALS = "credentials.json"
AUDITOR = "auditor"
ADMIN = "admin"
AUDITOR_PASSWORD_ENV = "OUTREACH_AUDITOR_PASSWORD"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"  # MLflow's own variable
DEFAULT_TEMPLATE = Path("configs/mlflow_auth.ini")
HOST = "127.0.0.1"
AUTHORIZATION_FUNCTION = "pipeline.tracking.auditor_server:authenticate_read_only"

# Requests that read: these methods, and the POST endpoints of MLflow's REST API and UI that
# only search or fetch (the UI posts its run searches and GraphQL queries; MLflow's GraphQL
# schema has no mutation but a test echo).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_POST_SUFFIXES = ("/search", "/search-datasets", "/batch-get", "/graphql")


@dataclass(frozen=True)
class AuditorAccess:
    """The auth set-up of one MLflow root: files, users and passwords."""

    root: Path
    ini: Path
    credentials: Path
    auditor: str
    auditor_password: str
    admin: str
    admin_password: str
    secret_key: str
    created: bool  # the credentials were made by this call (the password is shown once)


def auth_ini(template: str, database: Path) -> str:
    """The template with ``database_uri`` pointing at ``database``; READ by default, whatever
    the template says (this server is for reading)."""
    parser = configparser.ConfigParser()
    parser.read_string(template)
    if not parser.has_section("mlflow"):
        raise ValueError("the MLflow auth template has no [mlflow] section")
    parser["mlflow"]["database_uri"] = f"sqlite:///{database.resolve()}"
    parser["mlflow"]["default_permission"] = "READ"
    parser["mlflow"]["authorization_function"] = AUTHORIZATION_FUNCTION
    for secret in ("admin_password",):
        parser.remove_option("mlflow", secret)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def is_read_request(method: str, path: str) -> bool:
    """Whether a request only reads (see ``READ_METHODS`` and ``READ_POST_SUFFIXES``)."""
    method = method.upper()
    if method in READ_METHODS:
        return True
    return method == "POST" and path.rstrip("/").endswith(READ_POST_SUFFIXES)


def authenticate_read_only() -> object:
    """MLflow's basic-auth check, then a veto on every request of a non-admin user that does
    not only read (the ``authorization_function`` of the auth app).

    ``default_permission = READ`` already refuses changes to what exists; MLflow lets any
    signed-in user create new experiments, registered models and other top-level objects,
    which this veto refuses too (403), so that the auditor changes nothing."""
    from flask import jsonify, request
    from mlflow.server.auth import authenticate_request_basic_auth, store
    from werkzeug.datastructures import Authorization

    authorization = authenticate_request_basic_auth()
    if not isinstance(authorization, Authorization):
        return authorization
    if is_read_request(request.method, request.path):
        return authorization
    if store.get_user(authorization.username).is_admin:
        return authorization
    response = jsonify(
        {
            "error_code": "PERMISSION_DENIED",
            "message": "Permission denied: this MLflow view is read-only for auditors.",
        }
    )
    response.status_code = 403
    return response


def server_command(mlflow: str, root: Path, port: int, host: str = HOST) -> list[str]:
    """``mlflow server`` with the basic-auth app on the store and artifacts under ``root``."""
    root = root.resolve()
    return [
        mlflow,
        "server",
        "--app-name",
        "basic-auth",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--default-artifact-root",
        str(root / "artifacts"),
    ]


def server_env(access: AuditorAccess, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of the server: its auth config and secret key, no telemetry, no jobs."""
    env = {k: v for k, v in base.items() if k not in (ADMIN_PASSWORD_ENV, AUDITOR_PASSWORD_ENV)}
    env.update(
        {
            "MLFLOW_AUTH_CONFIG_PATH": str(access.ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": access.secret_key,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
    )
    return env


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (never world-readable, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _credentials(path: Path, env: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")), False
    facts = {
        "auditor": AUDITOR,
        "auditor_password": env.get(AUDITOR_PASSWORD_ENV) or secrets.token_urlsafe(18),
        "admin": ADMIN,
        "admin_password": env.get(ADMIN_PASSWORD_ENV) or secrets.token_urlsafe(24),
        "flask_secret_key": secrets.token_hex(32),
    }
    _write_private(path, json.dumps(facts, indent=2) + "\n")
    return facts, True


def prepare(
    root: Path, template: Path = DEFAULT_TEMPLATE, env: Mapping[str, str] | None = None
) -> AuditorAccess:
    """The auth folder under ``root`` (0700): its ini, credentials (0600) and user database
    with the admin and the read-only auditor (created when missing, without a server)."""
    env = os.environ if env is None else env
    if not (root / "mlflow.db").is_file():
        raise FileNotFoundError(
            f"no MLflow store at {root / 'mlflow.db'}: run the pipeline first (make run)"
        )
    folder = root / AUTH_FOLDER
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)
    ini = folder / AUTH_INI
    ini.write_text(auth_ini(template.read_text(encoding="utf-8"), folder / AUTH_DB), "utf-8")
    facts, created = _credentials(folder / CREDENTIALS, env)
    (folder / CREDENTIALS).chmod(0o600)
    _ensure_users(ini, facts, reset_passwords=created)
    return AuditorAccess(
        root=root,
        ini=ini,
        credentials=folder / CREDENTIALS,
        auditor=facts["auditor"],
        auditor_password=facts["auditor_password"],
        admin=facts["admin"],
        admin_password=facts["admin_password"],
        secret_key=facts["flask_secret_key"],
        created=created,
    )


def _ensure_users(ini: Path, facts: Mapping[str, str], reset_passwords: bool) -> None:
    """The admin and the auditor in the auth database (MLflow's auth store, no server); with
    ``reset_passwords`` (new credentials) users already there get the new passwords."""
    parser = configparser.ConfigParser()
    parser.read(ini)
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(parser["mlflow"]["database_uri"])
    for user, password, admin in (
        (facts["admin"], facts["admin_password"], True),
        (facts["auditor"], facts["auditor_password"], False),
    ):
        if not store.has_user(user, use_primary=True):
            store.create_user(user, password, is_admin=admin)
        elif reset_passwords:
            store.update_user(user, password=password)
    if store.get_user(facts["auditor"]).is_admin:
        raise ValueError(f"the user {facts['auditor']!r} is an admin: it must be read-only")
    store.engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.tracking.auditor_server",
        description="Serve the MLflow UI read-only for auditors (basic auth) on 127.0.0.1.",
    )
    parser.add_argument("--root", type=Path, default=Path("outputs/mlflow"), help="MLflow root")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE)
    parser.add_argument("--mlflow", default=str(Path(sys.executable).with_name("mlflow")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        access = prepare(args.root, args.template)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    url = f"http://{HOST}:{args.port}"
    print(f"MLflow UI for auditors (read-only): {url}  user: {access.auditor}")
    if access.created:
        print(f"auditor password (shown once): {access.auditor_password}")
    print(f"passwords: {access.credentials} (mode 0600)")
    sys.stdout.flush()
    command = server_command(args.mlflow, args.root, args.port)
    os.execve(command[0], command, server_env(access, os.environ))
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
