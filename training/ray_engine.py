"""The Ray training engine: the same pipeline, its heavy steps on a Ray cluster.

Ray Data reads the Parquet interactions (order preserved, so the dataset and its fingerprint are
those the local engine reads), ALS is fitted by `implicit` in a Ray task, and the ranker trains
with Ray Train's TorchTrainer: DistributedDataParallel over `workers` processes, gloo on CPU,
each replica computing its share of every batch (`recsys.ranking.model.Replica`), so N replicas
take the optimisation steps of one process. Rank 0 returns the weights as a checkpoint; MLflow is
logged by the driver only (training.pipeline). Needs the `ray` extra: pip install -e '.[ray]'.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field
from scipy.sparse import csr_matrix

from recsys.config import core_settings
from recsys.datasets import load
from recsys.ranking.model import MLPRanker, Ranker, RankingLists, Replica, load_ranker
from recsys.retrieval.als import ALS, ALSConfig
from recsys.schema import Dataset
from training.engine import Engine, EngineError

# Read by Ray when it is imported: "0" makes a node started here use the loopback address instead
# of the machine's reachable one, so a local instance listens on 127.0.0.1 only.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
RANKER_FILE = "ranker.pt"
REPORT_FILE = "report.json"


class RayEngineConfig(BaseModel):
    """Where the Ray engine runs and how wide."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = None  # a running cluster (ray://host:10001, host:6379, "auto"); None: a local instance
    workers: int = Field(default=2, ge=1)  # DDP replicas of the ranker
    num_cpus: int | None = Field(default=None, ge=1)  # CPUs of a local instance (None: every core)
    storage: str | None = None  # Ray Train's storage (a path every node sees, or s3://...); None: var/training/ray


class RayEngine(Engine):
    """Ray Data reads, a Ray task fits ALS, TorchTrainer (DDP, gloo) fits the ranker."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, num_cpus: int | None = None,
                 storage: str | None = None) -> None:
        super().__init__()
        self.config = RayEngineConfig(address=address, workers=workers, num_cpus=num_cpus, storage=storage)
        self._started = False

    # -- connection --------------------------------------------------------------------------

    def start(self) -> None:
        """Use the Ray session of this process if there is one, else connect to `address`, else
        start a private local instance (loopback only, no dashboard) that `stop` shuts down."""
        if self.config.address is None or _on_loopback(self.config.address):
            os.environ.setdefault(LOOPBACK_ONLY, "0")  # else Ray swaps 127.0.0.1 for the machine's address
        try:
            import ray
        except ImportError:
            raise EngineError("--engine ray: Ray is not installed (pip install -c constraints.txt -e '.[ray]')") from None
        if not ray.is_initialized():
            if self.config.address is None:
                ray.init(address="local", num_cpus=self.config.num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False, logging_level="warning")
            else:
                try:
                    # Workers import the project's code from the driver's copy (the cluster needs its dependencies).
                    ray.init(address=self.config.address, logging_level="warning", log_to_driver=False,
                             runtime_env={"py_modules": _project_modules()})
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise EngineError(f"--address: cannot connect to Ray at {self.config.address} ({_one_line(exc)}; a cluster "
                                      "with token authentication also needs RAY_AUTH_MODE=token here)") from None
            self._started = True
        ray.data.DataContext.get_current().execution_options.preserve_order = True  # the local engine's frame and fingerprint
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # the stage lines are the pipeline's

    def stop(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def describe(self) -> dict[str, str]:
        import ray

        cpus = ray.cluster_resources().get("CPU", 0.0) if ray.is_initialized() else 0.0
        return {"engine": self.name, "engine.workers": str(self.config.workers),
                "engine.address": self.config.address or "local", "engine.cluster_cpus": f"{cpus:g}"}

    # -- the three steps -----------------------------------------------------------------------

    def read(self, source: str | Path) -> Dataset:
        """The dataset with its interactions read by Ray Data (items and users are small metadata)."""
        return load(source, readers={"interactions": _read_with_ray_data})

    def fit_als(self, user_items: csr_matrix, config: ALSConfig) -> ALS:
        import ray

        cpus = ray.cluster_resources().get("CPU", 1.0)
        wanted = float(config.threads) if config.threads else cpus
        task = ray.remote(num_cpus=max(1.0, min(wanted, cpus)))(_fit_als)
        try:
            return ray.get(task.remote(user_items, config))
        except ray.exceptions.RayError as exc:
            raise EngineError(f"--engine ray: the ALS task failed ({_one_line(exc)})") from None

    def fit_ranker(self, ranker: Ranker, train: RankingLists, valid: RankingLists | None) -> tuple[Ranker, dict[str, float]]:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        if not isinstance(ranker, MLPRanker):
            raise EngineError(f"--engine ray: the ranker is trained with torch DDP; ranker kind {ranker.kind!r} is not a torch ranker")
        storage = self.config.storage or str((core_settings().var_dir / "training" / "ray").resolve())
        name = f"ranker-{uuid.uuid4().hex[:12]}"
        trainer = TorchTrainer(
            _fit_replica,
            train_loop_config={"ranker": ranker, "lists": ray.put((train, valid))},
            scaling_config=ScalingConfig(num_workers=self.config.workers, use_gpu=False, resources_per_worker={"CPU": 1}),
            torch_config=TorchConfig(backend="gloo"),
            run_config=RunConfig(name=name, storage_path=storage),
        )
        try:
            result = trainer.fit()
        except Exception as exc:  # Ray Train wraps the worker's error; one line names the step
            raise EngineError(f"--engine ray: ranker training failed ({_one_line(exc)})") from None
        if result.checkpoint is None:
            raise EngineError("--engine ray: ranker training returned no checkpoint")
        try:
            with result.checkpoint.as_directory() as directory:
                fitted = load_ranker(Path(directory) / RANKER_FILE)
                report = json.loads((Path(directory) / REPORT_FILE).read_text())
        finally:
            if "://" not in storage:  # the run's folder held only this checkpoint
                shutil.rmtree(Path(storage) / name, ignore_errors=True)
        return fitted, {key: float(value) for key, value in report.items()}


# -- what runs on the cluster (module-level functions: Ray pickles them by reference) -----------


def _read_with_ray_data(path: Path) -> pl.DataFrame:
    import pyarrow as pa
    import ray

    blocks = ray.get(ray.data.read_parquet(str(Path(path).resolve())).to_arrow_refs())
    frame = pl.from_arrow(pa.concat_tables(blocks, promote_options="default") if blocks else pa.table({}))
    if not isinstance(frame, pl.DataFrame):
        raise ValueError(f"{path}: not a table")
    return frame


def _fit_als(user_items: csr_matrix, config: ALSConfig) -> ALS:
    return ALS(config).fit(user_items)


def _fit_replica(config: dict[str, Any]) -> None:
    """One DDP replica: fit the shared initial ranker on its share of every batch; rank 0 reports
    the weights (all replicas hold the same ones) as the checkpoint."""
    import ray
    import ray.train
    import torch
    import torch.distributed as distributed
    from ray.train.torch import prepare_model

    context = ray.train.get_context()
    train, valid = ray.get(config["lists"])
    ranker: MLPRanker = config["ranker"]

    def total(figure: float) -> float:
        tensor = torch.tensor([figure], dtype=torch.float64)
        distributed.all_reduce(tensor, op=distributed.ReduceOp.SUM)
        return float(tensor.item())

    replica = Replica(rank=context.get_world_rank(), world_size=context.get_world_size(), wrap=prepare_model, total=total)
    with warnings.catch_warnings():
        # The lists are the object store's read-only shared pages (no copy per replica); training only reads them.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        report = ranker.fit(train, valid, replica)
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if replica.rank == 0:
            ranker.save(Path(directory) / RANKER_FILE)
            (Path(directory) / REPORT_FILE).write_text(json.dumps(report))
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(report, checkpoint=checkpoint)


def _project_modules() -> list[Any]:
    import recsys
    import training

    return [recsys, training]


def _on_loopback(address: str) -> bool:
    """Whether a cluster address names this machine's loopback (127.x, localhost, ::1)."""
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
