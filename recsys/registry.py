"""The MLflow side of a model: the pyfunc wrapper, loading a bundle by URI, aliases and tags.

`load_bundle("models:/name@alias" | "models:/name/3" | "runs:/RUN_ID[/model]")` downloads the
registered model's bundle once into var/models/ and returns (ModelBundle, version). The bundle is
one artifact directory, so a registered version carries every model in it: ALS and its index, the
sequential source (`sequential/`) when trained with one, and the ranker. The pyfunc wrapper lets
any MLflow tool call the model: a frame of user ids in, their top-k item ids out (both sources'
candidates, ranked).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext
from mlflow.tracking import MlflowClient

from recsys.bundle import BundleError, ModelBundle
from recsys.config import core_settings

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models import ModelSignature

MODEL_ARTIFACT = "model"  # the logged model's name inside its run
BUNDLE_ARTIFACT = "bundle"  # the bundle's key in the pyfunc artifacts
COMPLETE_MARKER = ".complete"


class RegistryError(ValueError):
    """A model URI cannot be resolved or loaded; the message names the URI."""


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the project's default (a SQLite file in the repo)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or core_settings().mlflow_tracking_uri


def client() -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri())
    return MlflowClient(tracking_uri())


class BundleModel(PythonModel):
    """pyfunc wrapper: `predict(frame with user_id[, k])` -> user_id, rank, item_id rows.

    Users without a history get the most popular items (the non-personalised list).
    """

    def load_context(self, context: PythonModelContext) -> None:
        self.bundle = ModelBundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context: PythonModelContext | None, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        if "user_id" not in model_input.columns:
            raise RegistryError("model input: expected a 'user_id' column")
        k = int((params or {}).get("k", 10))
        users = [str(u) for u in model_input["user_id"]]
        return recommend_frame(self.bundle, users, k)


def recommend_frame(bundle: ModelBundle, users: list[str], k: int) -> pd.DataFrame:
    """Top-k item ids per user id, two-stage for known users, popular items otherwise."""
    rows = np.asarray([bundle.user_index.get(u, -1) for u in users], dtype=np.int64)
    known = rows >= 0
    top = np.tile(bundle.popular(k), (len(users), 1))
    if known.any():
        ranked = bundle.recommend(rows[known], k)
        top[known, : ranked.shape[1]] = ranked
    out_users, ranks, items = [], [], []
    for user, row in zip(users, top):
        for rank, item in enumerate(row[row >= 0], start=1):
            out_users.append(user)
            ranks.append(rank)
            items.append(str(bundle.item_ids[item]))
    return pd.DataFrame({"user_id": out_users, "rank": ranks, "item_id": items})


def signature() -> ModelSignature:
    """The pyfunc's signature: user ids in, (user id, rank, item id) rows out, `k` as a parameter."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "user_id")]),
        outputs=Schema([ColSpec("string", "user_id"), ColSpec("long", "rank"), ColSpec("string", "item_id")]),
        params=ParamSchema([ParamSpec("k", "long", 10)]),
    )


# -- resolving and loading ------------------------------------------------------------------

_MODELS_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")
_MODELS_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_RUNS = re.compile(r"^runs:/(?P<run>[0-9a-fA-F]+)(?:/(?P<path>.+?))?/?$")


def resolve(model_uri: str) -> tuple[str, str, Any]:
    """(artifact URI of the logged model, version label, model version or None) for a model URI."""
    mlflow_client = client()
    try:
        if match := _MODELS_ALIAS.match(model_uri):
            version = mlflow_client.get_model_version_by_alias(match["name"], match["alias"])
            return f"models:/{match['name']}/{version.version}", str(version.version), version
        if match := _MODELS_VERSION.match(model_uri):
            version = mlflow_client.get_model_version(match["name"], match["version"])
            return f"models:/{match['name']}/{version.version}", str(version.version), version
        if match := _RUNS.match(model_uri):
            run_id = match["run"]
            mlflow_client.get_run(run_id)
            versions = mlflow_client.search_model_versions(f"run_id = '{run_id}'")
            if versions:
                version = max(versions, key=lambda v: int(v.version))
                return f"models:/{version.name}/{version.version}", str(version.version), version
            return f"runs:/{run_id}/{match['path'] or MODEL_ARTIFACT}", f"run-{run_id[:8]}", None
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"model URI {model_uri}: {_first_line(exc)} (tracking URI {tracking_uri()})") from None
    raise RegistryError(
        f"model URI {model_uri!r}: expected models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID[/PATH]"
    )


def load_bundle(model_uri: str | None = None, cache_dir: Path | None = None) -> tuple[ModelBundle, str]:
    """(ModelBundle, version) for a registered model or a run's logged model, cached on disk.

    The default URI is models:/<model_name>@<model_alias> from the core settings.
    """
    settings = core_settings()
    model_uri = model_uri or f"models:/{settings.model_name}@{settings.model_alias}"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    artifact_uri, label, version = resolve(model_uri)
    key = _cache_key(version, artifact_uri)
    target = Path(cache_dir or settings.var_dir / "models") / key
    if not (target / COMPLETE_MARKER).exists():
        _download(model_uri, artifact_uri, target)
    try:
        return ModelBundle.load(target), label
    except BundleError as exc:
        raise RegistryError(f"model URI {model_uri}: {exc}") from None


def _download(model_uri: str, artifact_uri: str, target: Path) -> None:
    """Download into a private staging folder, then publish it with one atomic rename, so several
    workers loading the same model at once never see (or delete) each other's partial copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(staging),
                                                         tracking_uri=tracking_uri()))
        bundle_dir = _find_bundle(local)
        (bundle_dir / COMPLETE_MARKER).touch()
        try:
            bundle_dir.rename(target)
        except OSError:
            if not (target / COMPLETE_MARKER).exists():  # leftovers of an interrupted older layout
                shutil.rmtree(target, ignore_errors=True)
                bundle_dir.rename(target)
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(f"model URI {model_uri}: cannot download artifacts ({_first_line(exc)})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cache_key(version: Any, artifact_uri: str) -> str:
    if version is not None:
        # A version number can be reused after a store is recreated; the run id pins the content.
        return f"{version.name}-v{version.version}-{(version.run_id or 'norun')[:12]}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", artifact_uri)


def _find_bundle(root: Path) -> Path:
    for candidate in (root / "artifacts" / BUNDLE_ARTIFACT, root / BUNDLE_ARTIFACT, root):
        if (candidate / "manifest.json").exists():
            return candidate
    found = next(root.rglob("manifest.json"), None)
    if found is None:
        raise RegistryError(f"{root}: the downloaded model holds no bundle (no manifest.json)")
    return found.parent


# -- aliases and tags -----------------------------------------------------------------------


def promote(version: str | int, alias: str | None = None, name: str | None = None) -> None:
    """Point `alias` (default: the serving alias) at `version`, e.g. after a compliance gate passes."""
    settings = core_settings()
    client().set_registered_model_alias(name or settings.model_name, alias or settings.model_alias, str(version))


def aliased_version(name: str | None = None, alias: str | None = None) -> ModelVersion | None:
    """The model version the alias points at, or None when there is none."""
    settings = core_settings()
    try:
        return client().get_model_version_by_alias(name or settings.model_name, alias or settings.model_alias)
    except mlflow.exceptions.MlflowException:
        return None


def _first_line(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return " ".join(str(message).split())[:300]
