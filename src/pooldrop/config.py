"""Settings: one class, read from ``POOLDROP_*`` environment variables (or passed in by tests).

Nothing here touches the disk or the network; ``resolve()`` fills the defaults that depend on the
data directory, and the app's lifespan does the I/O (creating the directory, the signing secret).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POOLDROP_", extra="ignore")

    environment: str = Field("development", description="`development` or `production`.")
    data_dir: Path = Field(
        Path("pooldrop-data"), description="Where the embedded default keeps its files."
    )
    database_url: str = Field(
        "", description="SQLAlchemy async URL; default SQLite in the data dir."
    )
    storage_url: str = Field("", description="Blob storage URL; default `file://<data_dir>/blobs`.")
    bus_url: str = Field(
        "memory://",
        description="Event wake-up bus: memory://, redis://, rediss://, redis+sentinel://, amqp://, amqps://.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    secret_key: str = Field(
        "", description="JWT signing key; generated and kept in the data dir if empty."
    )
    access_token_ttl: int = Field(3600, description="Access token lifetime, seconds.")
    session_ttl: int = Field(30 * 86400, description="Server-side session lifetime, seconds.")
    open_signup: bool = Field(
        True, description="Anyone may sign up (the first user is admin regardless)."
    )
    login_rate_limit: int = Field(
        10, description="Failed logins per username and per address per window."
    )
    login_rate_window: int = Field(300, description="The login rate-limit window, seconds.")
    password_time_cost: int = Field(3, description="argon2id passes (raise for more resistance).")
    password_memory_kib: int = Field(65536, description="argon2id memory per hash, KiB.")
    clock_skew: int = Field(
        300, description="How far in the future an upload `ts` may be, seconds."
    )
    storage_retry_backoff: float = Field(
        0.2, description="First retry delay of a failed blob write, seconds."
    )
    max_request_files: int = Field(10_000, description="Most files in one batch.")
    event_retention: int = Field(
        7 * 86400, description="Events older than this are purged, seconds."
    )
    scheduler_interval: float = Field(1.0, description="Seconds between scheduler passes.")
    transfer_expiry: int = Field(
        86400, description="Incomplete resumable uploads expire after, seconds."
    )
    ws_idle_timeout: float = Field(
        120.0, description="Close a WebSocket that sent nothing for this long."
    )
    download_redirect: bool = Field(False, description="Redirect downloads to presigned URLs (S3).")
    log_level: str = "info"

    @field_validator("environment")
    @classmethod
    def _known_environment(cls, v: str) -> str:
        if v not in {"development", "production", "test"}:
            raise ValueError("environment must be development, production or test")
        return v

    @model_validator(mode="after")
    def _no_placeholder_secret_in_production(self) -> Settings:
        if (
            self.environment == "production"
            and self.secret_key.strip().lower() in _PLACEHOLDER_SECRETS
        ):
            raise ValueError("POOLDROP_SECRET_KEY must be set to a real secret in production")
        return self

    def resolved(self) -> Settings:
        """A copy with the data-dir-relative defaults filled in (no I/O)."""
        update: dict[str, object] = {}
        if not self.database_url:
            update["database_url"] = f"sqlite+aiosqlite:///{self.data_dir / 'pooldrop.db'}"
        if not self.storage_url:
            update["storage_url"] = f"file://{(self.data_dir / 'blobs').absolute()}"
        return self.model_copy(update=update) if update else self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_or_create_secret(data_dir: Path) -> str:
    """The signing secret kept in the data dir (created once with mode 0600)."""
    path = data_dir / "secret.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL so two processes starting at once agree on one secret.
    try:
        fd = path.open("x", encoding="ascii")
    except FileExistsError:
        return path.read_text().strip()
    with fd:
        path.chmod(0o600)
        fd.write(value)
    return value


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
