"""Training: the MLflow-tracked pipeline (pipeline.py), its typed config (config.py), the model
registry and bundle loader (registry.py) and the `recsys train` / `recsys evaluate` commands (cli.py)."""
