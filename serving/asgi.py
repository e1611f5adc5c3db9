"""The ASGI entry point uvicorn imports in each worker: `uvicorn serving.asgi:app`."""

import os

# Before torch, Faiss and numpy load: one compute thread per worker by default in every thread
# (see `recsys.bundle.single_thread_inference`); an operator's own setting wins.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from serving.app import create_app  # noqa: E402

app = create_app()
