"""`recsys features add|remove|list`: the feature library's entry procedure from the command line
(Art. 9). Entries go to the same state database the servers read, and every change is logged;
running servers block matching items from their next request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

app = typer.Typer(help="The content feature library (Art. 9): add, remove and list entries.", no_args_is_help=True)


def _services():
    from pydantic import ValidationError

    from compliance.logstore import LogStore, LogStoreUnavailable
    from serving.config import Settings
    from serving.state.db import make_engine
    from serving.state.store import StateStore

    try:
        settings = Settings()
    except (ValidationError, ValueError) as exc:
        _fail(f"configuration: {' '.join(str(exc).split())[:300]}")
    try:
        logstore = LogStore(settings.logs, stream=f"features-cli-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
    except LogStoreUnavailable as exc:
        _fail(f"logs.dir: {exc}")
    return StateStore(make_engine(settings.database_url)), logstore


@app.command("add")
def add(
    kind: Annotated[str, typer.Option(help="keyword | regex | exemplar")],
    category: Annotated[str, typer.Option(help="illegal | harmful | spam | other")],
    author: Annotated[str, typer.Option(help="Who adds the entry (required by the entry standards).")],
    pattern: Annotated[str | None, typer.Option(help="The keyword or regular expression.")] = None,
    exemplar_item_id: Annotated[str | None, typer.Option(help="A known-bad item whose embedding is the exemplar.")] = None,
    threshold: Annotated[float, typer.Option(help="Cosine similarity for exemplars, in (0, 1].")] = 0.95,
    source: Annotated[str, typer.Option(help="Where the entry comes from: manual, regulator, report, ...")] = "manual",
    note: Annotated[str, typer.Option(help="Free text.")] = "",
) -> None:
    """Add an entry; items it matches are blocked on every surface from the next request."""
    from pydantic import ValidationError

    from compliance.feature_library import FeatureEntry, FeatureLibrary, FeatureLibraryError, validate_entry

    store, logstore = _services()
    try:
        entry = FeatureEntry(kind=kind, category=category, author=author, pattern=pattern,
                             exemplar_item_id=exemplar_item_id, threshold=threshold, source=source, note=note)
        library = FeatureLibrary([FeatureEntry.model_validate(e) for e in store.feature_entries()])
        entry = validate_entry(entry, library=library)
    except ValidationError as exc:
        _fail("; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors()))
    except (FeatureLibraryError, ValueError) as exc:
        _fail(" ".join(str(exc).split()))
    record = entry.model_dump(mode="json")
    logstore.append("feature_library", {"action": "add", "operator": author, "entry": record})
    store.add_feature_entry(entry.id, record, datetime.now(UTC))
    logstore.close()
    typer.echo(f"added {entry.id} ({entry.kind}, {entry.category})")


@app.command("remove")
def remove(
    entry_id: Annotated[str, typer.Argument(help="Id of the entry to remove.")],
    operator: Annotated[str, typer.Option(help="Who removes it.")],
) -> None:
    """Remove an entry (kept in the database with who removed it and when)."""
    store, logstore = _services()
    if not any(e.get("id") == entry_id for e in store.feature_entries()):
        _fail(f"ENTRY_ID: no active entry {entry_id!r}")
    logstore.append("feature_library", {"action": "remove", "operator": operator, "entry_id": entry_id})
    store.remove_feature_entry(entry_id, operator, datetime.now(UTC))
    logstore.close()
    typer.echo(f"removed {entry_id}")


@app.command("list")
def list_entries() -> None:
    """List the active entries."""
    store, logstore = _services()
    logstore.close()
    for entry in store.feature_entries():
        target = entry.get("pattern") or entry.get("exemplar_item_id") or "vector"
        typer.echo(f"{entry['id']}\t{entry['kind']}\t{entry['category']}\t{target}\t{entry['author']}\t{entry['created_at']}")


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)
