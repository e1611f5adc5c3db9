"""Typed configuration of the recommendation log store (Art. 28 (draft 24): keep service logs >= six months).

One `LogConfig` is the single source of truth for the store's knobs: where segments live, how
they are made durable, how long they are kept, and the key that makes the hash chain tamper-evident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

MIN_RETENTION_DAYS = 180
"""Art. 28 (draft 24) asks for service logs to be kept "not less than six months"; 180 days is the floor."""

DEV_HMAC_KEY = "recsys-dev-log-hmac-key-change-me"
"""Key used when none is configured; fine on a laptop, never in production (LogStore warns)."""

MIN_KEY_BYTES = 16


def check_retention_days(retention_days: int) -> int:
    """Return `retention_days` or raise ValueError citing Art. 28 (draft 24) when it is below the minimum."""
    if retention_days < MIN_RETENTION_DAYS:
        raise ValueError(
            f"retention_days: {retention_days} is below the minimum of {MIN_RETENTION_DAYS} days "
            "(Art. 28 (draft 24): recommendation service logs must be kept for at least six months)"
        )
    return retention_days


def key_bytes(key: str | bytes | SecretStr) -> bytes:
    """Normalise an HMAC key given as text, bytes or SecretStr; refuse keys too short to be secret."""
    if isinstance(key, SecretStr):
        key = key.get_secret_value()
    if isinstance(key, bytes | bytearray):
        try:
            key = bytes(key).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("hmac_key: must be UTF-8 text") from exc
    raw = key.encode("utf-8")
    if len(raw) < MIN_KEY_BYTES:
        raise ValueError(f"hmac_key: must be at least {MIN_KEY_BYTES} bytes, got {len(raw)}")
    return raw


class LogConfig(BaseModel):
    """Knobs of the log store; embed it in the serving settings (env prefix is the embedder's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: Path = Field(default=Path("var/logs"), description="Directory holding the segments.")
    fsync: Literal["always", "group"] = Field(
        default="group",
        description="'always': fsync before append returns; 'group': a background thread fsyncs "
        "at most every group_commit_ms (an OS crash loses at most that window of acknowledged "
        "records; a process crash loses nothing).",
    )
    group_commit_ms: int = Field(default=10, ge=1, le=1000)
    retention_days: int = Field(default=MIN_RETENTION_DAYS, description="Art. 28 (draft 24): >= 180.")
    hmac_key: SecretStr = Field(default=SecretStr(DEV_HMAC_KEY))
    segment_max_records: int = Field(default=100_000, ge=1)
    lookup_window_s: int = Field(
        default=300,
        ge=1,
        description="Longest time between new_request_id() and the append of its record; bounds "
        "the part of the log lookup() scans.",
    )
    min_free_mb: int = Field(default=64, ge=0, description="Refuse to start below this free space.")

    @field_validator("retention_days")
    @classmethod
    def _retention_at_least_six_months(cls, value: int) -> int:
        return check_retention_days(value)

    @field_validator("hmac_key")
    @classmethod
    def _key_long_enough(cls, value: SecretStr) -> SecretStr:
        key_bytes(value)
        return value

    def key(self) -> bytes:
        """The HMAC key as bytes."""
        return key_bytes(self.hmac_key)

    @property
    def uses_dev_key(self) -> bool:
        return self.hmac_key.get_secret_value() == DEV_HMAC_KEY


def config_for(directory: Path, key: str | bytes | SecretStr, **overrides: Any) -> LogConfig:
    """A LogConfig for maintenance commands that are given a directory and a key."""
    if not isinstance(key, SecretStr):
        key = SecretStr(key_bytes(key).decode("utf-8"))
    return LogConfig(dir=Path(directory), hmac_key=key, **overrides)
