"""Settings: defaults, environment overrides, --config files, secrets from files, production refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from server.settings import DEFAULT_CONFIG, DEFAULT_JWT_SECRET, SettingsError, load_settings

STRONG = "s" * 40


def test_defaults_run_the_embedded_mode() -> None:
    s = load_settings(environ={})
    assert s.storage.backend == "sqlite"
    assert s.redis.url == ""
    assert s.server.mode == "development"
    assert s.log_format == "console"
    assert s.sqlite_file == Path("var") / "muster.sqlite3"


def test_every_default_key_has_a_comment() -> None:
    lines = DEFAULT_CONFIG.read_text(encoding="utf-8").splitlines()
    raw = tomllib.loads("\n".join(lines))
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "[")):
            continue
        key = stripped.split("=", 1)[0].strip()
        if key.endswith("_file"):
            continue  # documented together with the key it feeds
        assert lines[i - 1].strip().startswith("#"), f"{key} lacks a comment on the line above"
    assert set(raw) == {"server", "log", "storage", "redis", "auth", "sso", "demo", "gateway", "rooms", "presence",
                        "files", "workflows", "media", "web"}


def test_environment_overrides_typed_values() -> None:
    env = {
        "MUSTER_SERVER_PORT": "9001",
        "MUSTER_AUTH_TRUST_FORWARDED_FOR": "yes",
        "MUSTER_SERVER_CORS_ORIGINS": "https://a.example, https://b.example",
        "MUSTER_SERVER_SHUTDOWN_TIMEOUT": "2.5",
        "MUSTER_STORAGE_BACKEND": "mongo",
    }
    s = load_settings(environ=env)
    assert s.server.port == 9001
    assert s.auth.trust_forwarded_for is True
    assert s.server.cors_origins == ["https://a.example", "https://b.example"]
    assert s.server.shutdown_timeout == 2.5
    assert s.storage.backend == "mongo"


@pytest.mark.parametrize(
    ("name", "value"),
    [("MUSTER_SERVER_PORT", "eighty"), ("MUSTER_AUTH_TRUST_FORWARDED_FOR", "maybe"),
     ("MUSTER_SERVER_SHUTDOWN_TIMEOUT", "soon")],
)
def test_environment_with_wrong_type_is_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(environ={name: value})


def test_config_file_wins_over_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "muster.toml"
    cfg.write_text('[server]\nport = 7000\n[redis]\nurl = "redis://127.0.0.1:1/0"\n', encoding="utf-8")
    s = load_settings(cfg, environ={"MUSTER_SERVER_PORT": "9001", "MUSTER_SERVER_HOST": "0.0.0.0"})
    assert s.server.port == 7000
    assert s.server.host == "0.0.0.0"
    assert s.redis.url == "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[server]\nprot = 1\n", "unknown setting server.prot"),
        ("[nope]\nx = 1\n", r"unknown section \[nope\]"),
        ('[server]\nport = "80"\n', "server.port should be int"),
        ("[server\n", "muster.toml"),
    ],
)
def test_bad_config_file_is_refused(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "muster.toml"
    cfg.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match=match):
        load_settings(cfg, environ={})


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml", environ={})


def test_secret_read_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "jwt"
    secret.write_text(STRONG + "\n", encoding="utf-8")
    s = load_settings(environ={"MUSTER_AUTH_JWT_SECRET_FILE": str(secret)})
    assert s.auth.jwt_secret == STRONG


def test_production_refuses_default_secret() -> None:
    with pytest.raises(SettingsError, match="default auth.jwt_secret"):
        load_settings(environ={"MUSTER_SERVER_MODE": "production"})
    assert DEFAULT_JWT_SECRET == load_settings(environ={}).auth.jwt_secret


def test_production_refuses_short_secret() -> None:
    with pytest.raises(SettingsError, match="at least 32"):
        load_settings(environ={"MUSTER_SERVER_MODE": "production", "MUSTER_AUTH_JWT_SECRET": "short"})


def test_production_refuses_open_cors() -> None:
    env = {"MUSTER_SERVER_MODE": "production", "MUSTER_AUTH_JWT_SECRET": STRONG, "MUSTER_SERVER_CORS_ORIGINS": "*"}
    with pytest.raises(SettingsError, match="cors_origins"):
        load_settings(environ=env)


def test_production_with_safe_settings_starts_with_json_logs() -> None:
    env = {"MUSTER_SERVER_MODE": "production", "MUSTER_AUTH_JWT_SECRET": STRONG,
           "MUSTER_SERVER_CORS_ORIGINS": "https://console.example"}
    s = load_settings(environ=env)
    assert s.production and s.log_format == "json"


def test_sso_needs_key_and_audience() -> None:
    with pytest.raises(SettingsError, match="sso.issuer"):
        load_settings(environ={"MUSTER_SSO_ISSUER": "https://sso.example"})
