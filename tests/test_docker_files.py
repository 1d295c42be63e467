"""docker/: what can be checked without a Docker engine.

The compose file, nginx config, Dockerfile and helper scripts are read and checked against the code they
deploy (settings names, the vendor files the server serves, the port it listens on). The settings the
compose file gives a node are loaded through server.settings in production mode with secrets made by
docker/make-secrets.sh; mongo-init.js runs under Node against a stand-in for mongosh's globals; and when
the `docker compose` client exists, it validates the compose file (no engine needed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo.uri_parser import parse_uri

from server.settings import DEFAULT_CONFIG, load_settings
from server.web import VENDOR

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
ENV = {"MUSTER_PUBLIC_HOST": "muster.example.org", "MUSTER_PUBLIC_IP": "203.0.113.10"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def nginx_conf() -> str:
    # Without comments, so that a directive only mentioned in a comment does not count.
    return re.sub(r"#[^\n]*", "", (DOCKER / "nginx.conf").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DOCKER / "Dockerfile").read_text(encoding="utf-8")


def interpolate(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with the example environment."""
    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if name in ENV:
            return ENV[name]
        assert op != ":?", f"${{{name}}} is required: {arg}"
        return arg if op == ":-" else ""
    return re.sub(r"\$\{([A-Z_]+)(?:(:-|:\?)([^}]*))?\}", one, value)


def muster_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if "MUSTER_STORAGE_BACKEND" in s.get("environment", {})}


def made_secrets(tmp_path: Path) -> Path:
    """docker/make-secrets.sh run on a copy of docker/ (never in the checkout); returns the secrets folder."""
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy, ignore=shutil.ignore_patterns("secrets", "certs"))
    subprocess.run(["sh", str(copy / "make-secrets.sh")], check=True, capture_output=True, timeout=30)
    return copy / "secrets"


def test_two_muster_nodes_with_one_image_and_the_production_settings(compose: dict[str, Any]) -> None:
    nodes = muster_services(compose)
    assert sorted(nodes) == ["muster1", "muster2"]
    images = {s["image"] for s in nodes.values()}
    assert len(images) == 1, images
    for name, node in nodes.items():
        env = node["environment"]
        assert env["MUSTER_SERVER_MODE"] == "production"
        assert env["MUSTER_STORAGE_BACKEND"] == "mongo"
        # Redis is the compose service, on Redis' port.
        assert re.fullmatch(r"redis://redis:6379/\d+", env["MUSTER_REDIS_URL"]), env["MUSTER_REDIS_URL"]
        assert "redis" in compose["services"]
        assert env["MUSTER_AUTH_TRUST_FORWARDED_FOR"] == "true"
        # Secrets come from Docker secrets, never from a value in this file.
        for key in ("MUSTER_AUTH_JWT_SECRET", "MUSTER_STORAGE_MONGO_URL", "MUSTER_MEDIA_TURN_SECRET"):
            assert key not in env
            secret = env[f"{key}_FILE"].removeprefix("/run/secrets/")
            assert secret in node["secrets"] and secret in compose["secrets"], (name, key)
        # Both nodes see the same files folder (a resumed upload may reach either one).
        assert "files:/var/lib/muster/files" in node["volumes"] and env["MUSTER_SERVER_DATA_DIR"] == "/var/lib/muster"
        assert node["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully"
        assert node["depends_on"]["redis"]["condition"] == "service_healthy"
        assert node["restart"] == "unless-stopped"
        assert node["deploy"]["resources"]["limits"]["memory"]


def test_the_settings_a_node_gets_load_in_production_mode(compose: dict[str, Any], tmp_path: Path) -> None:
    secrets = made_secrets(tmp_path)
    env = {k: interpolate(str(v)) for k, v in compose["services"]["muster1"]["environment"].items()}
    env = {k: str(secrets / v.removeprefix("/run/secrets/")) if v.startswith("/run/secrets/") else v
           for k, v in env.items()}
    settings = load_settings(environ=env)  # production mode refuses unsafe settings
    assert settings.production and settings.storage.backend == "mongo"
    assert settings.redis.url == "redis://redis:6379/0"
    assert settings.server.port == 8080
    assert settings.media.turn_secret == (secrets / "turn_secret").read_text().strip()
    assert settings.media.turn_urls == ["turn:muster.example.org:3478?transport=udp",
                                        "turn:muster.example.org:3478?transport=tcp"]
    # The Mongo URL names the three replica-set members, which are compose services running mongod in rs0.
    uri = parse_uri(settings.storage.mongo_url)
    assert uri["options"]["replicaSet"] == "rs0" and uri["database"] == settings.storage.mongo_database
    assert uri["options"]["w"] == "majority"  # an acknowledged write survives losing the primary
    hosts = sorted(h for h, _ in uri["nodelist"])
    assert hosts == ["mongo1", "mongo2", "mongo3"]
    for host in hosts:
        entry = " ".join(compose["services"][host]["entrypoint"])
        assert "--replSet rs0" in entry and "--keyFile" in entry
        assert compose["services"][host]["healthcheck"]["test"]
        assert f"{host}:/data/db" in compose["services"][host]["volumes"]
    # Secret files are readable by the containers' unprivileged users, the folder by its owner only.
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for f in secrets.iterdir())


def test_the_replica_set_is_initiated_once_and_muster_waits_for_it(compose: dict[str, Any], tmp_path: Path) -> None:
    init = compose["services"]["mongo-init"]
    assert init["restart"] == "no" and init["network_mode"] == "service:mongo1"
    assert "./mongo-init.js:/mongo-init.js:ro" in init["volumes"] and "/mongo-init.js" in init["command"]
    assert {init["depends_on"][m]["condition"] for m in ("mongo1", "mongo2", "mongo3")} == {"service_healthy"}
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: `make test` installs it", pytrace=False)
    secrets = made_secrets(tmp_path)
    script = (DOCKER / "mongo-init.js").read_text(encoding="utf-8").replace("/run/secrets/", f"{secrets}/")
    first, state = run_mongo_init(node, script, tmp_path, {"users": {}, "initiated": False})
    assert first["calls"][0][0] == "rs.initiate"
    config = first["calls"][0][1]
    assert config["_id"] == "rs0"
    assert [m["host"] for m in config["members"]] == ["mongo1:27017", "mongo2:27017", "mongo3:27017"]
    url = (secrets / "muster_mongo_url").read_text().strip()
    password = parse_uri(url)["password"]
    assert state["users"] == {"admin.root": (secrets / "mongo_root_password").read_text().strip(),
                              "muster.muster": password}
    # A second run (users exist, replica set initiated) creates nothing.
    again, state_again = run_mongo_init(node, script, tmp_path, state)
    assert [c[0] for c in again["calls"]] == ["updateUser"] and state_again["users"] == state["users"]


MONGOSH_STANDIN = """
const state = JSON.parse(process.env.STATE); const calls = [];
function database(name) {
  return {
    auth(user, pwd) { if (state.users[`${name}.${user}`] !== pwd) throw new Error("Authentication failed"); },
    createUser(u) { calls.push(["createUser", name, u.user]); state.users[`${name}.${u.user}`] = u.pwd; },
    updateUser(user, u) { calls.push(["updateUser", name, user]); state.users[`${name}.${user}`] = u.pwd; },
    getUser(user) { return state.users[`${name}.${user}`] === undefined ? null : {user}; },
    getSiblingDB(other) { return database(other); },
    hello() { return {isWritablePrimary: state.initiated, hosts: ["mongo1:27017"]}; },
  };
}
globalThis.db = database("test");
globalThis.rs = {
  status() { if (!state.initiated) { const e = new Error("no config"); e.codeName = "NotYetInitialized"; throw e; } },
  initiate(config) { calls.push(["rs.initiate", config]); state.initiated = true; },
};
globalThis.print = () => {}; globalThis.sleep = () => {};
process.on("exit", () => console.log(JSON.stringify({calls, state})));
"""


def run_mongo_init(node: str, script: str, tmp_path: Path, state: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    path = tmp_path / "mongo-init-under-node.js"
    path.write_text(MONGOSH_STANDIN + script, encoding="utf-8")
    result = subprocess.run([node, str(path)], capture_output=True, text=True, timeout=30, check=False,
                            env={**os.environ, "STATE": json.dumps(state)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    return out, out["state"]


def test_nginx_balances_both_nodes_upgrades_websockets_and_streams_uploads(
        compose: dict[str, Any], nginx_conf: str) -> None:
    upstreams = dict(re.findall(r"upstream (\w+) \{(.*?)\}", nginx_conf, flags=re.DOTALL))
    assert set(upstreams) == {"muster_any", "muster_sticky"}
    for body in upstreams.values():
        assert re.findall(r"server (muster\d):(\d+)", body) == [("muster1", "8080"), ("muster2", "8080")]
    for name in ("muster1", "muster2"):
        assert compose["services"][name]["environment"]["MUSTER_SERVER_PORT"] == "8080"
    assert "hash $remote_addr consistent" in upstreams["muster_sticky"]

    locations = dict(re.findall(r"location ([^{]+?) \{(.*?)\n        \}", nginx_conf, flags=re.DOTALL))
    socket = locations["/socket.io/"]
    assert "proxy_set_header Upgrade $http_upgrade;" in socket
    assert "proxy_set_header Connection $connection_upgrade;" in socket
    assert "proxy_http_version 1.1;" in nginx_conf
    assert re.search(r"proxy_read_timeout (\d+)h;", socket)
    # A location that sets headers of its own inherits none: the forwarding headers must be repeated.
    for header in ("Host $http_host", "X-Forwarded-For $remote_addr", "X-Forwarded-Proto $scheme"):
        assert f"proxy_set_header {header};" in socket and f"proxy_set_header {header};" in nginx_conf

    uploads = locations["/api/uploads"]
    assert "proxy_request_buffering off;" in uploads
    [limit] = re.findall(r"client_max_body_size (\d+)g;", uploads)
    assert int(limit) * 2**30 >= load_settings(environ={}).files.max_upload_size
    assert "gzip on;" in nginx_conf and "text/javascript" in nginx_conf and "text/css" in nginx_conf
    assert "return 404" in locations["= /metrics"]

    web = compose["services"]["nginx"]
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in web["volumes"]
    assert {web["depends_on"][n]["condition"] for n in ("muster1", "muster2")} == {"service_healthy"}


def test_coturn_shares_the_secret_muster_signs_turn_credentials_with(compose: dict[str, Any]) -> None:
    turn = compose["services"]["coturn"]
    conf = (DOCKER / "turnserver.conf").read_text(encoding="utf-8")
    assert re.search(r"^use-auth-secret$", conf, flags=re.MULTILINE)
    assert not re.search(r"^static-auth-secret", conf, flags=re.MULTILINE)  # appended at start, from the secret
    assert "static-auth-secret=$$(cat /run/secrets/turn_secret)" in " ".join(turn["entrypoint"])
    node_env = compose["services"]["muster1"]["environment"]
    assert node_env["MUSTER_MEDIA_TURN_SECRET_FILE"] == "/run/secrets/turn_secret"
    assert "turn_secret" in turn["secrets"]
    # Relays reach the nodes' network and nothing else private.
    [subnet] = [c["subnet"] for c in compose["networks"]["frontend"]["ipam"]["config"]]
    assert subnet == "172.28.0.0/16" and "allowed-peer-ip=172.28.0.0-172.28.255.255" in conf
    assert compose["networks"]["backend"]["internal"] is True
    assert {"redis", "mongo1"} <= {n for n, s in compose["services"].items() if s.get("networks") == ["backend"]}


def test_images_are_pinned(compose: dict[str, Any], dockerfile: str) -> None:
    images = [s["image"] for s in compose["services"].values()]
    images += re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    for image in images:
        name, _, tag = interpolate(image).rpartition(":")
        assert name and tag and tag != "latest", image


def test_the_dockerfile_builds_a_small_non_root_image(dockerfile: str) -> None:
    lines = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.startswith("#")]
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    final = lines[stages[-1]:]
    assert final[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0", "0:0"), users
    assert final[-1] == 'CMD ["python", "-m", "server", "run", "--host", "0.0.0.0"]'
    assert "EXPOSE 8080" in final
    assert any(line.startswith("HEALTHCHECK") for line in final) and "/readyz" in dockerfile
    assert "pip install ." in dockerfile and "[dev]" not in dockerfile and "dev]" not in dockerfile
    assert "npm ci" in dockerfile and "package-lock.json" in dockerfile

    # settings.py reads config/default.toml beside the packages: the image puts it there.
    beside = DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[1])  # config/default.toml
    assert f"COPY config/default.toml /opt/muster/lib/python3.11/site-packages/{beside}" in dockerfile
    # Every vendor file the server serves ends up under the web folder's node_modules.
    [web_dir] = re.findall(r"MUSTER_WEB_DIR=(\S+)", dockerfile)
    assert f"COPY --from=web /vendor {web_dir}/node_modules" in dockerfile
    for target in VENDOR.values():
        assert target in dockerfile, target
    for page in ("index.html", "console.html", "mobile.html", "call.html"):
        assert (ROOT / "clients" / "web" / page).exists() and f"clients/web/{page}" in dockerfile


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".git", ".venv", "var", "**/node_modules", "docker/secrets"):
        assert entry in ignored, entry
