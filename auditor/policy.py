"""The policy the audit holds the server to: what GET /v1/transparency declares (structured
fields, else the plain-language policy texts), else the API contract's defaults."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ExpectedPolicy:
    """The dispersal and front-screen policy the server declares, or the contract defaults (the
    server's default policy: "at least 2 editorial items within positions 1-10" on the first page
    of home, at most 2 of a category in any 5 positions; tests/auditor/test_lists.py holds them equal)."""

    dispersal_window: int = 5
    dispersal_max: int = 2
    dispersal_across_pages: bool = True
    front_surfaces: tuple[str, ...] = ("home",)
    front_pages: tuple[int, ...] = (0,)
    front_positions: tuple[int, ...] = tuple(range(1, 11))
    front_count: int | None = 2  # at least this many of `front_positions` (None: every one)
    front_pool: str = "mainstream"
    source: str = "defaults"


def expected_policy(transparency: Any) -> ExpectedPolicy:
    """The dispersal and front-screen policy the transparency document declares: structured fields
    (`dispersal`, `front_screen`) if present, else the plain-language policy texts, else defaults."""
    found: dict[str, Any] = {}
    sources: set[str] = set()
    for node in _walk(transparency):
        if isinstance(node, dict):
            d, f = node.get("dispersal"), node.get("front_screen")
            if isinstance(d, dict) and isinstance(d.get("window"), int) and isinstance(d.get("max_per_window"), int):
                found.update(dispersal_window=d["window"], dispersal_max=d["max_per_window"],
                             dispersal_across_pages=bool(d.get("across_pages", True)))
                sources.add("transparency fields")
            if isinstance(f, dict) and isinstance(f.get("positions"), list):
                count = f.get("count")
                found.update(front_positions=tuple(int(p) for p in f["positions"]),
                             front_count=int(count) if isinstance(count, int) else None,
                             front_surfaces=tuple(f.get("surfaces") or ("home",)),
                             front_pages=tuple(int(p) for p in f.get("pages") or (0,)),
                             front_pool=str(f.get("pool") or "mainstream"))
                sources.add("transparency fields")
        elif isinstance(node, str):
            dispersal = re.search(r"In any (\d+) consecutive positions, at most (\d+) items share", node)
            if dispersal and "dispersal_window" not in found:
                found.update(dispersal_window=int(dispersal.group(1)), dispersal_max=int(dispersal.group(2)),
                             dispersal_across_pages="within each page" not in node)
                sources.add("transparency text")
            # pages in the API's numbering: "on the front screen (page 0)" or "on pages 0 and 1 (...)"
            front = re.search(r"On the (.+?) surfaces?, on (?:the front screen \(page (0)\)|pages ([\d, and]+?) \(page 0 "
                              r"is the front screen\)), (?:at least (\d+) of )?positions? ([\d, andto]+?) show items from "
                              r"the editorial '([^']+)' pool", node)
            if front and "front_positions" not in found:
                found.update(front_surfaces=tuple(s.strip() for s in re.split(r",| and ", front.group(1)) if s.strip()),
                             front_pages=_numbers(front.group(2) or front.group(3)),
                             front_positions=_positions(front.group(5)), front_pool=front.group(6),
                             front_count=int(front.group(4)) if front.group(4) else None)
                sources.add("transparency text")
            elif "No front-screen slots are configured" in node and "front_positions" not in found:
                found.update(front_positions=())
                sources.add("transparency text")
    return ExpectedPolicy(**found, source=" + ".join(sorted(sources)) or "defaults")


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for inner in value.values():
            yield from _walk(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _walk(inner)


def _positions(text: str) -> tuple[int, ...]:
    """"1 and 5" -> (1, 5); "1 to 10" -> (1, ..., 10)."""
    run = re.fullmatch(r"\s*(\d+) to (\d+)\s*", text)
    return tuple(range(int(run.group(1)), int(run.group(2)) + 1)) if run else _numbers(text)


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))
