"""The composition roots: the only package that wires the layers together — the `recsys` command
(`app/cli.py`) and the filing command (`app/filing_cli.py`). Nothing imports from here."""
