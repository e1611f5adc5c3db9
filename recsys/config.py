"""Where things live: the data folder, the MLflow store, the registered model's name and alias.

Read once from the environment (`RECSYS_...`); every command and the server share these defaults,
so `make serve` on a fresh clone needs no configuration at all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class CoreSettings(BaseSettings):
    """Locations and names shared by training, serving and the benchmarks."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", extra="ignore")

    data_dir: Path = PROJECT_ROOT / "data"
    var_dir: Path = PROJECT_ROOT / "var"  # state database, logs, model cache
    mlflow_tracking_uri: str = f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"
    mlflow_artifacts_dir: Path = PROJECT_ROOT / "mlartifacts"
    experiment_name: str = "recsys"
    model_name: str = "recsys-two-stage"
    model_alias: str = "champion"

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def processed_dir(self) -> Path:
        return self.data_dir / "processed"


@lru_cache(maxsize=1)
def core_settings() -> CoreSettings:
    return CoreSettings()


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (e.g. another MLflow store), with the cached
    core settings re-read on the way in and out; variables are restored as they were."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    core_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        core_settings.cache_clear()
