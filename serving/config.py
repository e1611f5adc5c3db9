"""Serving settings: read once, from `RECSYS_...` environment variables and one optional TOML file.

Every knob of the request path is here or in the config object of the component it belongs to
(policy, logs, minors, tags, complaints), so a deployment is described by one file:
`RECSYS_CONFIG=deploy.toml recsys serve`. Nested values use `__` in environment variables,
e.g. `RECSYS_POLICY__DISPERSAL__WINDOW=6`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from compliance.complaints import ComplaintsConfig
from compliance.elderly import ElderlyConfig
from compliance.logstore import LogConfig
from compliance.minors import MinorsConfig
from compliance.oversight import OversightConfig
from compliance.policy import PolicyConfig
from compliance.tags import TagPolicy
from compliance.trending import TrendingConfig
from recsys.config import core_settings
from served.path import POPULAR_CANDIDATES, RETRIEVAL_CANDIDATES
from serving.auth import AuthConfig
from serving.operators import ConsoleConfig

SURFACES = ("home", "feed", "related", "trending")
DEV_ADMIN_TOKEN = "dev-admin-token"


def _default_database_url() -> str:
    return f"sqlite:///{core_settings().var_dir / 'state.db'}"


def _default_log_config() -> LogConfig:
    """The log store shares its two variables with `recsys logs`: RECSYS_LOG_DIR, RECSYS_LOG_HMAC_KEY."""
    values: dict = {"dir": Path(os.environ.get("RECSYS_LOG_DIR") or core_settings().var_dir / "logs")}
    if os.environ.get("RECSYS_LOG_HMAC_KEY"):
        values["hmac_key"] = os.environ["RECSYS_LOG_HMAC_KEY"]
    return LogConfig(**values)


class Settings(BaseSettings):
    """Everything the server needs to know; defaults run a complete local service."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_nested_delimiter="__", extra="ignore")

    model_uri: str = Field(
        default_factory=lambda: f"models:/{core_settings().model_name}@{core_settings().model_alias}",
        description="MLflow model URI of the two-stage model to serve.",
    )
    database_url: str = Field(default_factory=_default_database_url)
    service_name: str = "Reference compliant recommender"
    provider_name: str = "Example Provider Ltd."
    filing_number: str = "DEV-UNFILED-0000"  # the algorithm filing number (Art. 26 (draft 22)); set per deployment
    admin_token: SecretStr = SecretStr(DEV_ADMIN_TOKEN)
    surfaces: tuple[str, ...] = SURFACES
    max_k: int = 100
    max_page: int = 50
    # Fits the largest accepted request, a batch of 1,000 events with every id at its longest (~0.5 MB).
    max_body_bytes: int = 1024 * 1024
    retrieval_candidates: int = RETRIEVAL_CANDIDATES  # Faiss top-N fed to the filters and the ranker
    popular_candidates: int = POPULAR_CANDIDATES  # size of the non-personalized popularity source
    recent_pages_excluded: int = 5  # personalized lists skip items shown in the user's last N pages
    # Items one user may mark "not interested" / "fewer like this" at once: every request reads them
    # all, so the count is bounded; past it a new mark is refused (409) until the user undoes one.
    max_feedback_items: int = Field(default=1000, ge=1, le=100_000)
    state_refresh_seconds: float = 0.0  # 0: interventions and feature library re-read when their version changes
    # Requests one worker computes at once. 1 (default): a worker's requests queue for the pipeline
    # instead of sharing one core (and the GIL) through the thread pool; scale with --workers.
    compute_threads: int = Field(default=1, ge=1, le=64)

    auth: AuthConfig = AuthConfig()  # user authentication (serving/auth.py); `recsys serve` checks it is complete
    policy: PolicyConfig = PolicyConfig()
    logs: LogConfig = Field(default_factory=lambda: _default_log_config())
    minors: MinorsConfig = MinorsConfig()
    elderly: ElderlyConfig = ElderlyConfig()  # Art. 19 elderly mode: its age default
    tags: TagPolicy = TagPolicy()
    complaints: ComplaintsConfig = ComplaintsConfig()
    trending: TrendingConfig = TrendingConfig()
    oversight: OversightConfig = OversightConfig()  # which manual changes need a second person (two-person rule)
    console: ConsoleConfig = ConsoleConfig()  # operator accounts, sessions, the admin token's service account
    feature_library_path: Path = Field(default_factory=lambda: core_settings().var_dir / "feature-library.jsonl")

    @field_validator("max_k")
    @classmethod
    def _max_k_in_range(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError(f"max_k must be in 1..1000, got {value}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        config_file = os.environ.get("RECSYS_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise ValueError(f"RECSYS_CONFIG: no such file: {config_file}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)
