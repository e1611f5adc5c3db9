"""The ASGI entry point uvicorn imports in each worker: `uvicorn serving.asgi:app`."""

from serving.app import create_app

app = create_app()
