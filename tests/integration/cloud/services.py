"""Keystone, Glance and the Trove API, for real, on loopback: SQLite databases, Glance's file store,
one throw-away directory, all three from one pinned venv (venvs.py): keystone and glance under
gunicorn (their WSGI apps), trove-api as its own server.

Used by tests/integration/test_register.py; everything is stopped and removed by `running_cloud`.
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from builder.verify import procs

from .venvs import cloud_venv

HOST = "127.0.0.1"
SQLITE_BIGINT = Path(__file__).resolve().parent / "sqlite_bigint.py"
REGION = "RegionOne"


@dataclass
class Cloud:
    """Where the services listen, how to log in, and what the tests need to look behind the APIs."""

    root: Path
    keystone_url: str
    admin_password: str
    member_password: str
    trove_venv: Path
    trove_conf: Path
    glance_store: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def env(self, user: str = "admin") -> dict[str, str]:
        """OS_* variables for `admin` (the admin role) or `member` (a plain project member)."""
        password = self.admin_password if user == "admin" else self.member_password
        project = "admin" if user == "admin" else "demo"
        return {"OS_AUTH_URL": self.keystone_url, "OS_USERNAME": user, "OS_PASSWORD": password,
                "OS_PROJECT_NAME": project, "OS_USER_DOMAIN_NAME": "Default",
                "OS_PROJECT_DOMAIN_NAME": "Default", "OS_REGION_NAME": REGION, "OS_IDENTITY_API_VERSION": "3",
                "OS_INTERFACE": "public"}

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _ini(sections: dict[str, dict[str, object]]) -> str:
    out = []
    for section, values in sections.items():
        out.append(f"[{section}]")
        out += [f"{k} = {v}" for k, v in values.items()]
        out.append("")
    return "\n".join(out)


def _run(argv: list, root: Path, name: str, env: dict | None = None) -> None:
    with open(root / f"{name}.log", "a") as log:
        result = subprocess.run([str(a) for a in argv], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, cwd=root)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv[:3]))} failed; see {root / (name + '.log')}:\n"
                           + "\n".join((root / f"{name}.log").read_text().splitlines()[-30:]))


def _wait_http(url: str, proc: subprocess.Popen, cloud_root: Path, name: str, timeout: float = 180) -> None:
    """Until `url` answers at all (any HTTP status), or the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n"
                               + "\n".join((cloud_root / f"{name}.log").read_text(errors="replace").splitlines()[-40:]))
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{name} did not answer on {url} within {timeout:.0f} s")


def _spawn(argv: list, root: Path, name: str, marker: str, env: dict | None = None) -> subprocess.Popen:
    log = open(root / f"{name}.log", "ab")
    try:
        return procs.spawn(argv, marker=marker, env=env, stdout=log, cwd=root)
    finally:
        log.close()


def start_keystone(root: Path, marker: str, admin_password: str) -> tuple[subprocess.Popen, str]:
    venv = cloud_venv()
    port = procs.free_port(HOST)
    url = f"http://{HOST}:{port}/v3"
    conf = root / "keystone.conf"
    for d in ("fernet-keys", "credential-keys"):
        (root / d).mkdir(mode=0o700)
    conf.write_text(_ini({
        "DEFAULT": {"log_file": root / "keystone-service.log"},
        "database": {"connection": f"sqlite:///{root / 'keystone.db'}"},
        "token": {"provider": "fernet"},
        "fernet_tokens": {"key_repository": root / "fernet-keys"},
        "fernet_receipts": {"key_repository": root / "fernet-keys"},
        "credential": {"key_repository": root / "credential-keys"},
    }))
    manage = [venv / "bin" / "keystone-manage", "--config-file", conf]
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    _run([*manage, "db_sync"], root, "keystone-manage")
    _run([*manage, "fernet_setup", "--keystone-user", user, "--keystone-group", group], root, "keystone-manage")
    _run([*manage, "credential_setup", "--keystone-user", user, "--keystone-group", group], root, "keystone-manage")
    _run([*manage, "bootstrap", "--bootstrap-password", admin_password, "--bootstrap-admin-url", url,
          "--bootstrap-public-url", url, "--bootstrap-internal-url", url, "--bootstrap-region-id", REGION],
         root, "keystone-manage")
    # keystone's config parser reads sys.argv: gunicorn's own options must not reach it.
    (root / "keystone_app.py").write_text("import sys\nsys.argv[1:] = []\nfrom keystone.wsgi.api import application\n")
    proc = _spawn([venv / "bin" / "gunicorn", "--bind", f"{HOST}:{port}", "--workers", "1", "--threads", "4",
                   "--timeout", "300", "--no-control-socket", "--chdir", root, "keystone_app:application"],
                  root, "keystone", marker, env={"OS_KEYSTONE_CONFIG_FILES": str(conf)})
    _wait_http(url, proc, root, "keystone")
    return proc, url


def _authtoken(keystone_url: str, user: str, password: str) -> dict[str, object]:
    return {"www_authenticate_uri": keystone_url, "auth_url": keystone_url, "auth_type": "password",
            "project_domain_name": "Default", "user_domain_name": "Default", "project_name": "service",
            "username": user, "password": password, "region_name": REGION, "service_token_roles_required": "true"}


def start_glance(root: Path, marker: str, keystone_url: str, password: str) -> tuple[subprocess.Popen, str, Path]:
    venv = cloud_venv()
    port = procs.free_port(HOST)
    store = root / "glance-images"
    for d in (store, root / "glance-staging", root / "glance-tasks"):
        d.mkdir()
    (root / "glance").mkdir()
    conf = root / "glance" / "glance-api.conf"  # glance's WSGI app reads $OS_GLANCE_CONFIG_DIR/glance-api.conf
    conf.write_text(_ini({
        "DEFAULT": {"log_file": root / "glance-service.log", "enabled_backends": "fs:file"},
        "database": {"connection": f"sqlite:///{root / 'glance.db'}"},
        "glance_store": {"default_backend": "fs"},
        "fs": {"filesystem_store_datadir": store},
        "os_glance_staging_store": {"filesystem_store_datadir": root / "glance-staging"},
        "os_glance_tasks_store": {"filesystem_store_datadir": root / "glance-tasks"},
        "keystone_authtoken": _authtoken(keystone_url, "glance", password),
        "paste_deploy": {"flavor": "keystone", "config_file": venv / "etc" / "glance" / "glance-api-paste.ini"},
    }))
    _run([venv / "bin" / "glance-manage", "--config-file", conf, "db_sync"], root, "glance-manage")
    proc = _spawn([venv / "bin" / "gunicorn", "--bind", f"{HOST}:{port}", "--workers", "1", "--threads", "4",
                   "--timeout", "600", "--no-control-socket", "glance.wsgi.api:application"],
                  root, "glance", marker, env={"OS_GLANCE_CONFIG_DIR": str(conf.parent)})
    url = f"http://{HOST}:{port}"
    _wait_http(url + "/versions", proc, root, "glance")
    return proc, url, store


def trove_command(venv: Path, script: str) -> list:
    """A trove console script, started through the SQLite big-integer shim (see sqlite_bigint.py)."""
    return [venv / "bin" / "python", SQLITE_BIGINT, venv / "bin" / script]


def start_trove(root: Path, marker: str, keystone_url: str,
                password: str) -> tuple[subprocess.Popen, str, Path, Path]:
    """trove-api alone: registration uses only its management API, which makes no RPC call, so the
    message bus is oslo.messaging's in-process fake:// transport instead of a broker."""
    venv = cloud_venv()
    port = procs.free_port(HOST)
    conf = root / "trove.conf"
    conf.write_text(_ini({
        "DEFAULT": {"bind_host": HOST, "bind_port": port, "trove_api_workers": 1,
                    "log_file": root / "trove-service.log",
                    "api_paste_config": venv / "etc" / "trove" / "api-paste.ini", "transport_url": "fake://",
                    "control_exchange": "trove"},
        "database": {"connection": f"sqlite:///{root / 'trove.db'}"},
        "keystone_authtoken": _authtoken(keystone_url, "trove", password),
        "service_credentials": {"auth_url": keystone_url, "username": "trove", "password": password,
                                "project_name": "service", "user_domain_name": "Default",
                                "project_domain_name": "Default", "region_name": REGION},
    }))
    _run([*trove_command(venv, "trove-manage"), "--config-file", conf, "db_sync"], root, "trove-manage")
    proc = _spawn([*trove_command(venv, "trove-api"), "--config-file", conf], root, "trove", marker)
    url = f"http://{HOST}:{port}"
    _wait_http(url + "/", proc, root, "trove")
    return proc, url, venv, conf


def register_services(keystone_url: str, admin_password: str, service_password: str, member_password: str,
                      glance_url: str, trove_url: str) -> None:
    """Service users with the admin role in project `service`, the catalog, and a plain member."""
    import openstack

    conn = openstack.connect(auth_url=keystone_url, username="admin", password=admin_password,
                             project_name="admin", user_domain_name="Default", project_domain_name="Default",
                             region_name=REGION)
    identity = conn.identity
    service_project = identity.create_project(name="service", domain_id="default")
    demo = identity.create_project(name="demo", domain_id="default")
    admin_role = identity.find_role("admin")
    member_role = identity.find_role("member")
    for name in ("glance", "trove"):
        user = identity.create_user(name=name, password=service_password, domain_id="default")
        identity.assign_project_role_to_user(service_project, user, admin_role)
    member = identity.create_user(name="member", password=member_password, domain_id="default")
    identity.assign_project_role_to_user(demo, member, member_role)
    for name, kind, url in (("glance", "image", glance_url),
                            ("trove", "database", trove_url + "/v1.0/$(tenant_id)s")):
        service = identity.create_service(name=name, type=kind)
        for interface in ("public", "internal", "admin"):
            identity.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=REGION)
    conn.close()


@contextlib.contextmanager
def running_cloud() -> Iterator[Cloud]:
    """Keystone, Glance and trove-api up and in the catalog; all stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="trove-builder-cloud-"))
    marker = procs.new_marker("cloud")
    admin_password, service_password, member_password = (secrets.token_hex(12) for _ in range(3))
    running: dict[str, subprocess.Popen] = {}
    cloud_venv()
    try:
        running["keystone"], keystone_url = start_keystone(root, marker, admin_password)
        running["glance"], glance_url, store = start_glance(root, marker, keystone_url, service_password)
        running["trove"], trove_url, trove_venv, trove_conf = start_trove(root, marker, keystone_url, service_password)
        register_services(keystone_url, admin_password, service_password, member_password, glance_url, trove_url)
        yield Cloud(root=root, keystone_url=keystone_url, admin_password=admin_password,
                    member_password=member_password, trove_venv=trove_venv, trove_conf=trove_conf,
                    glance_store=store, processes=running)
    finally:
        for proc in running.values():
            procs.terminate(proc, marker=marker, grace=10)
        shutil.rmtree(root, ignore_errors=True)
