"""Settings: config/default.toml, overridden by MUSTER_<SECTION>_<KEY> variables, then --config FILE."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "default.toml"
DEFAULT_JWT_SECRET = "change-me-muster-development-secret"  # noqa: S105 (a known default, refused in production)


class SettingsError(Exception):
    """A setting is unknown, has the wrong type, or is unsafe for the chosen mode."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    mode: str
    host: str
    port: int
    cors_origins: list[str]
    max_body_bytes: int
    shutdown_timeout: float
    data_dir: str
    gc_freeze: bool


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str
    format: str


@dataclass(frozen=True, slots=True)
class StorageSettings:
    backend: str
    sqlite_path: str
    mongo_url: str
    mongo_url_file: str
    mongo_database: str


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str
    url_file: str
    prefix: str


@dataclass(frozen=True, slots=True)
class AuthSettings:
    jwt_secret: str
    jwt_secret_file: str
    issuer: str
    audience: str
    access_ttl: int
    refresh_ttl: int
    max_failures_per_account: int
    max_failures_per_address: int
    failure_window: int
    password_min_length: int
    trust_forwarded_for: bool


@dataclass(frozen=True, slots=True)
class SsoSettings:
    issuer: str
    audience: str
    public_key: str
    public_key_file: str
    algorithms: list[str]
    username_claim: str


@dataclass(frozen=True, slots=True)
class DemoSettings:
    password: str


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    events_per_second: float
    event_burst: int


@dataclass(frozen=True, slots=True)
class RoomsSettings:
    max_text_length: int
    edit_window: int
    recall_window: int
    ack_renotify_interval: int
    page_limit: int


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    ttl: int


@dataclass(frozen=True, slots=True)
class FilesSettings:
    dir: str
    blob_store: str
    max_upload_size: int
    user_quota: int
    upload_expiry: int
    clamd: str
    clamd_timeout: float
    thumbnail_size: int
    max_image_pixels: int
    link_ttl: int


@dataclass(frozen=True, slots=True)
class WorkflowsSettings:
    incident_types: dict[str, str]
    incident_departments: dict[str, list[str]]
    supervision_office: str
    projects_office: str
    urge_before: list[int]
    overdue_urge_interval: int
    supervise_grace: int
    supervise_after_urges: int
    supervise_extension: int
    webhook_url: str
    webhook_secret: str
    webhook_secret_file: str
    webhook_attempts: int


@dataclass(frozen=True, slots=True)
class MediaSettings:
    stun_urls: list[str]
    turn_urls: list[str]
    turn_secret: str
    turn_secret_file: str
    turn_ttl: int
    invitation_ttl: int
    recordings_max_seconds: int


@dataclass(frozen=True, slots=True)
class WebSettings:
    enabled: bool
    dir: str


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings
    log: LogSettings
    storage: StorageSettings
    redis: RedisSettings
    auth: AuthSettings
    sso: SsoSettings
    demo: DemoSettings
    gateway: GatewaySettings
    rooms: RoomsSettings
    presence: PresenceSettings
    files: FilesSettings
    workflows: WorkflowsSettings
    media: MediaSettings
    web: WebSettings

    @property
    def production(self) -> bool:
        return self.server.mode == "production"

    @property
    def data_dir(self) -> Path:
        return Path(self.server.data_dir)

    @property
    def files_dir(self) -> Path:
        path = Path(self.files.dir)
        return path if path.is_absolute() else self.data_dir / path

    @property
    def sqlite_file(self) -> Path:
        path = Path(self.storage.sqlite_path)
        return path if path.is_absolute() else self.data_dir / path

    @property
    def web_dir(self) -> Path:
        """The web clients' folder: web.dir, or the repository's clients/web when it is empty."""
        return Path(self.web.dir) if self.web.dir else DEFAULT_CONFIG.parent.parent / "clients" / "web"

    @property
    def log_format(self) -> str:
        if self.log.format:
            return self.log.format
        return "json" if self.production else "console"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_env(value: str, like: Any, name: str) -> Any:
    """Turn an environment string into the type of the default value it replaces."""
    if isinstance(like, bool):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise SettingsError(f"{name}: expected a boolean, got {value!r}")
    if isinstance(like, int):
        try:
            return int(value)
        except ValueError:
            raise SettingsError(f"{name}: expected an integer, got {value!r}") from None
    if isinstance(like, float):
        try:
            return float(value)
        except ValueError:
            raise SettingsError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(like, dict):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise SettingsError(f"{name}: expected a JSON object, got {value!r}")
        return parsed
    if isinstance(like, list):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                raise SettingsError(f"{name}: expected a JSON list, got {value!r}") from None
            items = [str(item) for item in parsed]
        else:
            items = [part.strip() for part in text.split(",") if part.strip()]
        if like and all(isinstance(item, int) for item in like):
            try:
                return [int(item) for item in items]
            except ValueError:
                raise SettingsError(f"{name}: expected a list of integers, got {value!r}") from None
        return items
    return value


def _merge(base: dict[str, dict[str, Any]], extra: Mapping[str, Any], origin: str) -> None:
    for section, values in extra.items():
        if section not in base or not isinstance(values, Mapping):
            raise SettingsError(f"{origin}: unknown section [{section}]")
        for key, value in values.items():
            if key not in base[section]:
                raise SettingsError(f"{origin}: unknown setting {section}.{key}")
            like = base[section][key]
            if isinstance(like, bool) != isinstance(value, bool) or (
                not isinstance(value, type(like)) and not (isinstance(like, float) and isinstance(value, int))
            ):
                raise SettingsError(
                    f"{origin}: {section}.{key} should be {type(like).__name__}, got {type(value).__name__}"
                )
            base[section][key] = value


def _build(cls: type, values: dict[str, Any]) -> Any:
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        sub = hints[f.name]
        kwargs[f.name] = _build(sub, values[f.name]) if isinstance(sub, type) and is_dataclass(sub) else values[f.name]
    return cls(**kwargs)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build the settings once, at start; `overrides` (section -> key -> value) win over everything."""
    env = os.environ if environ is None else environ
    with DEFAULT_CONFIG.open("rb") as fh:
        raw: dict[str, dict[str, Any]] = tomllib.load(fh)
    for section, values in raw.items():
        for key, like in values.items():
            name = f"MUSTER_{section}_{key}".upper()
            if name in env:
                values[key] = _parse_env(env[name], like, name)
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                _merge(raw, tomllib.load(fh), str(config_file))
        except OSError as exc:
            raise SettingsError(f"cannot read config file {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_file}: {exc}") from None
    if overrides:
        _merge(raw, overrides, "overrides")
    for section, values in raw.items():
        for key in list(values):
            if key.endswith("_file") and values[key]:
                target = key.removesuffix("_file")
                try:
                    values[target] = Path(values[key]).read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise SettingsError(f"{section}.{key}: cannot read {values[key]}: {exc.strerror}") from None
    settings: Settings = _build(Settings, raw)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Refuse settings that cannot work, and unsafe ones in production mode."""
    if settings.server.mode not in ("development", "production"):
        raise SettingsError("server.mode must be 'development' or 'production'")
    if settings.storage.backend not in ("sqlite", "mongo"):
        raise SettingsError("storage.backend must be 'sqlite' or 'mongo'")
    if settings.log.format not in ("", "console", "json"):
        raise SettingsError("log.format must be '', 'console' or 'json'")
    if settings.log.level.lower() not in ("debug", "info", "warning", "error"):
        raise SettingsError("log.level must be debug, info, warning or error")
    for alg in settings.sso.algorithms:
        if alg not in ("RS256", "ES256"):
            raise SettingsError("sso.algorithms may hold RS256 and ES256 only")
    if settings.sso.issuer and not (settings.sso.public_key and settings.sso.audience):
        raise SettingsError("sso.issuer needs sso.public_key and sso.audience")
    if settings.auth.access_ttl <= 0 or settings.auth.refresh_ttl <= settings.auth.access_ttl:
        raise SettingsError("auth.refresh_ttl must be longer than auth.access_ttl, both positive")
    if settings.gateway.events_per_second <= 0 or settings.gateway.event_burst < 1:
        raise SettingsError("gateway.events_per_second and gateway.event_burst must be positive")
    if settings.presence.ttl < 3:
        raise SettingsError("presence.ttl must be at least 3 seconds")
    if settings.files.blob_store not in ("auto", "disk", "gridfs"):
        raise SettingsError("files.blob_store must be 'auto', 'disk' or 'gridfs'")
    if settings.files.blob_store == "gridfs" and settings.storage.backend != "mongo":
        raise SettingsError("files.blob_store = 'gridfs' needs storage.backend = 'mongo'")
    if settings.files.max_upload_size < 1 or settings.files.user_quota < 0 or settings.files.upload_expiry < 60:
        raise SettingsError("files.max_upload_size must be positive, files.user_quota not negative, "
                            "files.upload_expiry at least 60 seconds")
    w = settings.workflows
    if any(b < 0 for b in w.urge_before) or min(w.overdue_urge_interval, w.supervise_extension) < 60:
        raise SettingsError("workflows.urge_before must not be negative; overdue_urge_interval and "
                            "supervise_extension must be at least 60 seconds")
    if w.supervise_grace < 0 or w.supervise_after_urges < 1 or w.webhook_attempts < 1:
        raise SettingsError("workflows.supervise_grace must not be negative; supervise_after_urges and "
                            "webhook_attempts must be at least 1")
    if w.webhook_url and not (w.webhook_secret or w.webhook_secret_file):
        raise SettingsError("workflows.webhook_url needs workflows.webhook_secret (or webhook_secret_file)")
    m = settings.media
    if m.turn_urls and not m.turn_secret:
        raise SettingsError("media.turn_urls needs media.turn_secret (or turn_secret_file): coturn's "
                            "static-auth-secret")
    if m.turn_ttl < 60 or m.invitation_ttl < 60:
        raise SettingsError("media.turn_ttl and media.invitation_ttl must be at least 60 seconds")
    if settings.files.clamd and not re.fullmatch(r"(unix:/.+|tcp:[^:]+:\d+)", settings.files.clamd):
        raise SettingsError("files.clamd must be '', 'unix:/path/to/clamd.sock' or 'tcp:host:port'")
    if settings.production:
        if settings.auth.jwt_secret == DEFAULT_JWT_SECRET:
            raise SettingsError("production mode refuses the default auth.jwt_secret: set MUSTER_AUTH_JWT_SECRET")
        if len(settings.auth.jwt_secret) < 32:
            raise SettingsError("production mode needs an auth.jwt_secret of at least 32 characters")
        if "*" in settings.server.cors_origins:
            raise SettingsError("production mode refuses server.cors_origins = ['*']: list the allowed origins")
