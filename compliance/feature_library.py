"""Content feature library (Art. 9: a feature library for identifying illegal and harmful information,
with entry standards, rules and procedures).

An entry is a keyword, a regular expression or an exemplar (a known-bad item's embedding, or an
explicit vector) with a cosine-similarity threshold. `FeatureLibrary.match` flags every catalogue
item that any entry matches; `match_one` checks one new item. Libraries are immutable: `add` and
`remove` return a new library, so a server swaps the whole library in one assignment.

Entry standards (enforced by `FeatureEntry`, reported by `validate_entry`): a non-empty pattern of
at most 512 characters for keyword and regex entries; a regex must compile in both Python's `re`
and polars' Rust engine, and nested unbounded quantifiers such as `(a+)+` are refused (prone to
catastrophic backtracking wherever the pattern is reused); an exemplar names exactly one of an
item id or a vector; the threshold is in (0, 1]; the category is one of `CATEGORIES`; an author
is required, so every entry can be traced to the person or process that added it.

Matching rules: text is NFKC-normalised first (full-width and compatibility forms fold to their
plain letters); keywords match as case-insensitive substrings, regexes as written (add `(?i)` for
case-insensitive). Regexes run on the Rust engine, which is linear-time. Exemplars match items
whose normalised embedding has inner product >= threshold with the exemplar (Faiss, in chunks).
The first matching entry in library order is the one reported for an item.

Categories: entries of "illegal", "harmful", "spam" and "other" block the items they match for
everyone. Entries of "fraud_risk" (`AUDIENCE_CATEGORIES`) flag items as a fraud or scam risk
without blocking them for everyone: users in elderly mode never receive them (final Provisions
Art. 19: identify and handle telecom and online fraud information for the elderly;
compliance/elderly.py). Confirmed fraud is "illegal" and blocked for everyone.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CATEGORIES = ("illegal", "harmful", "spam", "other", "fraud_risk")
# Categories that flag items for an audience instead of blocking them for everyone (category -> who
# must not receive the items): LibraryMatch.flags holds their masks.
AUDIENCE_CATEGORIES = {"fraud_risk": "users in elderly mode (Art. 19)"}
KINDS = ("keyword", "regex", "exemplar")
MAX_PATTERN_CHARS = 512
ENTRY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
EXEMPLAR_CHUNK_ROWS = 65_536  # items normalised and searched per Faiss call: bounds extra memory


class FeatureLibraryError(ValueError):
    """A bad entry, library file or match input; the message names the entry, field or file."""


def _nested_unbounded_quantifier(pattern: str) -> bool:
    """True when a group that holds an unbounded quantifier is itself repeated without bound.

    `(a+)+`, `(\\w*)*`, `(?:x+y)+` and `(a{2,})*` are refused; `(ab)+`, `a+b+` and `(a+){2}` pass.
    """
    stack: list[bool] = []  # per open group: does it contain an unbounded quantifier?
    closed_group_unbounded = False  # the token just read was a group holding one
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        unbounded = False
        if char == "\\":
            i += 2
            closed_group_unbounded = False
            continue
        if char == "[":  # skip a character class, honouring escapes and a leading ]
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
            closed_group_unbounded = False
            continue
        if char == "(":
            stack.append(False)
            i += 1
            closed_group_unbounded = False
            continue
        if char == ")":
            inner = stack.pop() if stack else False
            i += 1
            closed_group_unbounded = inner
            if stack and inner:
                stack[-1] = True
            continue
        if char in "*+":
            unbounded = True
            i += 1
        elif char == "{":
            match = re.match(r"\{(\d*)(,?)(\d*)\}", pattern[i:])
            if match:
                unbounded = bool(match.group(2)) and not match.group(3)
                i += match.end()
            else:
                i += 1
        else:
            i += 1
        if unbounded:
            if closed_group_unbounded:
                return True
            if stack:
                stack[-1] = True
        closed_group_unbounded = False
    return False


def _check_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"pattern: regex {pattern!r} does not compile: {exc}") from None
    try:
        pl.Series("text", [""], dtype=pl.Utf8).str.contains(pattern)
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).split("\n\nThis error occurred")[0].replace("\n", " ")
        raise ValueError(
            f"pattern: regex {pattern!r} is not supported by the matching engine "
            f"(Rust regex syntax: no look-around, no back-references): {reason}"
        ) from None
    if _nested_unbounded_quantifier(pattern):
        raise ValueError(
            f"pattern: regex {pattern!r} repeats a group that is itself repeated without bound "
            "(e.g. '(a+)+'), which is prone to catastrophic backtracking; rewrite it without nesting"
        )


def new_entry_id() -> str:
    return f"fe-{uuid.uuid4().hex[:12]}"


class FeatureEntry(BaseModel):
    """One rule of the library: what it matches, why it is there, and who put it there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=new_entry_id)
    kind: Literal["keyword", "regex", "exemplar"]
    pattern: str | None = None  # keyword or regex; None for exemplars
    exemplar_item_id: str | None = None  # a known-bad item whose embedding is the exemplar
    vector: tuple[float, ...] | None = None  # or the exemplar embedding itself
    threshold: float = Field(default=0.95, gt=0.0, le=1.0)  # cosine similarity, exemplars only
    category: Literal["illegal", "harmful", "spam", "other", "fraud_risk"]
    source: str = Field(default="manual", min_length=1, max_length=128)  # e.g. manual, regulator, report
    author: str = Field(min_length=1, max_length=128)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    note: str = Field(default="", max_length=2000)

    @field_validator("id")
    @classmethod
    def _id_format(cls, value: str) -> str:
        if not ENTRY_ID_RE.match(value):
            raise ValueError(
                f"id: {value!r} must be 1-64 characters of letters, digits, '_', '.', ':' or '-', "
                "starting with a letter or digit"
            )
        return value

    @field_validator("author", "source")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    @model_validator(mode="after")
    def _kind_fields(self) -> FeatureEntry:
        if self.kind in ("keyword", "regex"):
            if self.exemplar_item_id is not None or self.vector is not None:
                raise ValueError(f"{self.kind} entry {self.id!r}: exemplar_item_id and vector must be empty")
            if self.pattern is None or not self.pattern.strip():
                raise ValueError(f"pattern: {self.kind} entry {self.id!r} needs a non-empty pattern")
            if len(self.pattern) > MAX_PATTERN_CHARS:
                raise ValueError(
                    f"pattern: {self.kind} entry {self.id!r} has {len(self.pattern)} characters, "
                    f"at most {MAX_PATTERN_CHARS} allowed"
                )
            if self.kind == "regex":
                _check_regex(self.pattern)
            elif "\n" in self.pattern:
                raise ValueError(f"pattern: keyword entry {self.id!r} must be a single line")
            return self
        if self.pattern is not None:
            raise ValueError(f"pattern: exemplar entry {self.id!r} takes exemplar_item_id or vector, not a pattern")
        if (self.exemplar_item_id is None) == (self.vector is None):
            raise ValueError(f"exemplar entry {self.id!r}: give exactly one of exemplar_item_id or vector")
        if self.exemplar_item_id is not None and not self.exemplar_item_id.strip():
            raise ValueError(f"exemplar_item_id: exemplar entry {self.id!r} has a blank item id")
        if self.vector is not None:
            array = np.asarray(self.vector, dtype=np.float64)
            if array.size == 0 or not np.all(np.isfinite(array)) or not np.any(array):
                raise ValueError(f"vector: exemplar entry {self.id!r} needs a non-empty, finite, non-zero vector")
        return self


def _format_validation_error(exc: ValidationError, where: str) -> str:
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"]) or "entry"
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if not message.startswith(f"{location}:") else message)
    return f"{where}: " + "; ".join(parts)


def validate_entry(
    entry: FeatureEntry | Mapping[str, Any],
    library: FeatureLibrary | None = None,
    item_ids: Iterable[str] | None = None,
    dim: int | None = None,
) -> FeatureEntry:
    """Apply the entry standards and return the entry; raise FeatureLibraryError naming each problem.

    With `library`, the id must be new. With `item_ids` (ids, or a mapping id -> item index such as
    the model's `item_index`), an exemplar's item must exist; with `dim`,
    an explicit vector must have that many dimensions.
    """
    if not isinstance(entry, FeatureEntry):
        if not isinstance(entry, Mapping):
            raise FeatureLibraryError(f"feature entry: expected an object, got {type(entry).__name__}")
        label = f"feature entry {entry.get('id')!r}" if entry.get("id") else "feature entry"
        try:
            entry = FeatureEntry.model_validate(dict(entry))
        except ValidationError as exc:
            raise FeatureLibraryError(_format_validation_error(exc, label)) from None
    problems = []
    if library is not None and entry.id in library:
        problems.append(f"id: {entry.id!r} is already in the library")
    known = item_ids if isinstance(item_ids, Mapping) else None if item_ids is None else set(item_ids)
    if known is not None and entry.exemplar_item_id is not None and entry.exemplar_item_id not in known:
        problems.append(f"exemplar_item_id: item {entry.exemplar_item_id!r} is not in the catalogue")
    if dim is not None and entry.vector is not None and len(entry.vector) != dim:
        problems.append(f"vector: has {len(entry.vector)} dimensions, the item embeddings have {dim}")
    if problems:
        raise FeatureLibraryError(f"feature entry {entry.id!r}: " + "; ".join(problems))
    return entry


@dataclass(frozen=True)
class LibraryMatch:
    """Which items the library flags. `blocked`: items entries of a blocking category match (blocked
    for everyone); `flags`: per audience category (`AUDIENCE_CATEGORIES`), the items its entries
    match. `entry_for_item` maps item position -> first matching entry id (blocking or flagging);
    `counts` is, per entry id, how many items that entry matches (an item may match several);
    `unresolved` names exemplar entries that could not be applied, with the reason."""

    blocked: np.ndarray  # bool per item
    entry_for_item: dict[int, str]
    counts: dict[str, int]
    unresolved: dict[str, str] = field(default_factory=dict)
    flags: dict[str, np.ndarray] = field(default_factory=dict)  # audience category -> bool per item

    @property
    def blocked_count(self) -> int:
        return int(self.blocked.sum())

    @property
    def matched(self) -> np.ndarray:
        """Items any entry matches, blocking or flagging."""
        matched = self.blocked.copy()
        for mask in self.flags.values():
            matched |= mask
        return matched

    def flagged(self, category: str) -> np.ndarray:
        """Items entries of audience `category` match (all False when there is none)."""
        mask = self.flags.get(category)
        return np.zeros(len(self.blocked), dtype=bool) if mask is None else mask


def _normalise_text(series: pl.Series) -> pl.Series:
    return series.fill_null("").str.normalize("NFKC")


def _fold_keyword(keyword: str) -> str:
    """The form a keyword is compared in: NFKC, lower case (the same folding as the texts get)."""
    return unicodedata.normalize("NFKC", keyword).lower()


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # a zero vector stays zero: similarity 0 with every exemplar
    unit: np.ndarray = vectors / norms
    return unit


class FeatureLibrary:
    """An immutable, ordered set of feature entries and the vectors of exemplar items it knows."""

    def __init__(self, entries: Iterable[FeatureEntry] = (), exemplar_vectors: Mapping[str, np.ndarray] | None = None):
        entries = tuple(entries)
        seen: set[str] = set()
        for entry in entries:
            if not isinstance(entry, FeatureEntry):
                raise FeatureLibraryError(f"feature library: expected FeatureEntry, got {type(entry).__name__}")
            if entry.id in seen:
                raise FeatureLibraryError(f"feature library: duplicate entry id {entry.id!r}")
            seen.add(entry.id)
        self._entries = entries
        self._exemplar_vectors = {
            key: np.array(value, dtype=np.float32).ravel() for key, value in (exemplar_vectors or {}).items()
        }
        # (a keyword or regex entry always has a pattern: FeatureEntry's validator)
        self._keywords = [(e.id, _fold_keyword(e.pattern)) for e in entries if e.kind == "keyword" and e.pattern]
        self._regexes = [(e.id, e.pattern) for e in entries if e.kind == "regex" and e.pattern]
        self._exemplars = [e for e in entries if e.kind == "exemplar"]

    # -- immutable updates ----------------------------------------------------------------------
    @property
    def entries(self) -> tuple[FeatureEntry, ...]:
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return any(e.id == entry_id for e in self._entries)

    def get(self, entry_id: str) -> FeatureEntry | None:
        return next((e for e in self._entries if e.id == entry_id), None)

    def add(self, entry: FeatureEntry | Mapping[str, Any]) -> FeatureLibrary:
        """A new library with `entry` appended (validated; the id must be new)."""
        entry = validate_entry(entry, library=self)
        return FeatureLibrary((*self._entries, entry), self._exemplar_vectors)

    def remove(self, entry_id: str) -> FeatureLibrary:
        """A new library without entry `entry_id`; FeatureLibraryError when there is none."""
        if entry_id not in self:
            raise FeatureLibraryError(f"feature library: no entry with id {entry_id!r}")
        return FeatureLibrary((e for e in self._entries if e.id != entry_id), self._exemplar_vectors)

    def with_exemplar_vectors(self, item_ids: Sequence[str], item_vectors: np.ndarray) -> FeatureLibrary:
        """A new library that remembers the embeddings of its exemplar items, so `match_one` can use them."""
        wanted = {e.exemplar_item_id for e in self._exemplars if e.exemplar_item_id is not None}
        vectors = dict(self._exemplar_vectors)
        item_vectors = np.asarray(item_vectors)
        for position, item_id in enumerate(item_ids):
            if item_id in wanted:
                vectors[item_id] = item_vectors[position]
        return FeatureLibrary(self._entries, vectors)

    # -- matching -------------------------------------------------------------------------------
    def _text_hits(self, texts: Sequence[pl.Series]) -> dict[str, np.ndarray]:
        """Per keyword/regex entry id, a bool mask over the items (any text field matches)."""
        hits: dict[str, np.ndarray] = {}
        if not self._keywords and not self._regexes:
            return hits
        n_items = len(texts[0])
        for entry_id, _ in [*self._keywords, *self._regexes]:
            hits[entry_id] = np.zeros(n_items, dtype=bool)
        for raw in texts:
            text = _normalise_text(raw)
            if self._keywords:
                folded = text.str.to_lowercase()
                keywords = [kw for _, kw in self._keywords]
                # one Aho-Corasick pass finds the rows worth attributing to individual keywords
                candidates = np.flatnonzero(folded.str.contains_any(keywords).to_numpy())
                if candidates.size:
                    subset = folded.gather(candidates)
                    for entry_id, keyword in self._keywords:
                        found = subset.str.contains(keyword, literal=True).to_numpy()
                        hits[entry_id][candidates[found]] = True
            if self._regexes:
                frame = pl.DataFrame({"text": text})
                matched = frame.select(
                    [pl.col("text").str.contains(pattern).alias(str(i)) for i, (_, pattern) in enumerate(self._regexes)]
                )
                for i, (entry_id, _) in enumerate(self._regexes):
                    hits[entry_id] |= matched.get_column(str(i)).fill_null(False).to_numpy()
        return hits

    def _exemplar_matrix(
        self, item_ids: Sequence[str] | Mapping[str, int] | None, item_vectors: np.ndarray | None
    ) -> tuple[list[FeatureEntry], np.ndarray | None, dict[str, str]]:
        """The exemplar entries that can be applied, their unit vectors, and why the others cannot."""
        unresolved: dict[str, str] = {}
        usable: list[FeatureEntry] = []
        rows: list[np.ndarray] = []
        dim = None if item_vectors is None else item_vectors.shape[1]
        position: Mapping[str, int] = {} if item_ids is None else (
            item_ids if isinstance(item_ids, Mapping) else {item_id: i for i, item_id in enumerate(item_ids)})
        for entry in self._exemplars:
            if entry.vector is not None:
                vector = np.asarray(entry.vector, dtype=np.float32)
            elif entry.exemplar_item_id is not None and entry.exemplar_item_id in position and item_vectors is not None:
                vector = np.asarray(item_vectors[position[entry.exemplar_item_id]], dtype=np.float32)
            elif entry.exemplar_item_id in self._exemplar_vectors:
                vector = self._exemplar_vectors[entry.exemplar_item_id]
            else:
                unresolved[entry.id] = f"exemplar item {entry.exemplar_item_id!r} has no known embedding"
                continue
            if dim is not None and vector.shape[0] != dim:
                unresolved[entry.id] = f"vector has {vector.shape[0]} dimensions, the items have {dim}"
                continue
            if not np.any(vector):
                unresolved[entry.id] = "exemplar embedding is all zeros"
                continue
            usable.append(entry)
            rows.append(vector)
        if not usable:
            return usable, None, unresolved
        return usable, _unit_rows(np.stack(rows)), unresolved

    def match(
        self,
        titles: Sequence[str] | pl.Series,
        item_vectors: np.ndarray | None,
        item_ids: Sequence[str] | Mapping[str, int],
        texts: Mapping[str, Sequence[str] | pl.Series] | None = None,
    ) -> LibraryMatch:
        """Flag every item any entry matches: keywords/regexes over titles and the `texts` fields,
        exemplars over `item_vectors` (rows aligned with `item_ids`: the ids in row order, or a
        mapping id -> row such as the model's `item_index`, which builds no per-item objects)."""
        n_items = len(item_ids)
        series = [pl.Series("title", titles, dtype=pl.Utf8) if not isinstance(titles, pl.Series) else titles]
        for name, values in (texts or {}).items():
            series.append(values if isinstance(values, pl.Series) else pl.Series(name, values, dtype=pl.Utf8))
        for s, name in zip(series, ["titles", *(texts or {})], strict=True):
            if len(s) != n_items:
                raise FeatureLibraryError(f"match: {name} has {len(s)} rows, item_ids has {n_items}")
        if item_vectors is not None:
            item_vectors = np.asarray(item_vectors)
            if item_vectors.ndim != 2 or item_vectors.shape[0] != n_items:
                raise FeatureLibraryError(
                    f"match: item_vectors must have shape ({n_items}, dim), got {item_vectors.shape}"
                )
        hits = self._text_hits(series)
        exemplars, matrix, unresolved = self._exemplar_matrix(item_ids, item_vectors)
        if matrix is not None and item_vectors is not None:
            hits.update(self._exemplar_hits(exemplars, matrix, item_vectors))
        for entry in self._exemplars:
            if item_vectors is None and entry.id not in unresolved and entry.id not in hits:
                unresolved[entry.id] = "no item embeddings were given"
        blocked = np.zeros(n_items, dtype=bool)
        flags: dict[str, np.ndarray] = {}
        entry_for_item: dict[int, str] = {}
        counts: dict[str, int] = {}
        for entry in self._entries:
            mask = hits.get(entry.id)
            if mask is None:
                counts[entry.id] = 0
                continue
            counts[entry.id] = int(mask.sum())
            fresh = np.flatnonzero(mask & ~blocked)
            for item in fresh.tolist():
                entry_for_item.setdefault(item, entry.id)
            if entry.category in AUDIENCE_CATEGORIES:
                flags[entry.category] = flags.get(entry.category, np.zeros(n_items, dtype=bool)) | mask
            else:
                entry_for_item.update(dict.fromkeys(fresh.tolist(), entry.id))  # a blocking entry is the one reported
                blocked |= mask
        return LibraryMatch(blocked=blocked, entry_for_item=entry_for_item, counts=counts, unresolved=unresolved,
                            flags=flags)

    @staticmethod
    def _exemplar_hits(
        exemplars: list[FeatureEntry], matrix: np.ndarray, item_vectors: np.ndarray
    ) -> dict[str, np.ndarray]:
        thresholds = np.array([e.threshold for e in exemplars], dtype=np.float32)
        index = faiss.IndexFlatIP(matrix.shape[1])
        index.add(matrix)
        radius = float(thresholds.min()) - 1e-6  # Faiss keeps scores strictly above the radius
        masks = {e.id: np.zeros(item_vectors.shape[0], dtype=bool) for e in exemplars}
        for start in range(0, item_vectors.shape[0], EXEMPLAR_CHUNK_ROWS):
            chunk = _unit_rows(item_vectors[start : start + EXEMPLAR_CHUNK_ROWS])
            lims, scores, labels = index.range_search(chunk, radius)
            if labels.size == 0:
                continue
            rows = np.repeat(np.arange(chunk.shape[0]), np.diff(lims).astype(np.int64))
            keep = scores >= thresholds[labels] - 1e-6
            for j, entry in enumerate(exemplars):
                selected = rows[keep & (labels == j)]
                masks[entry.id][start + selected] = True
        return masks

    def match_one(
        self, title: str, vector: np.ndarray | Sequence[float] | None = None, texts: Mapping[str, str] | None = None
    ) -> str | None:
        """The id of the first entry matching one new item, or None. Exemplars given by item id
        apply only when the library knows that item's embedding (`with_exemplar_vectors`)."""
        fields = [pl.Series("title", [title], dtype=pl.Utf8)]
        fields += [pl.Series(name, [value], dtype=pl.Utf8) for name, value in (texts or {}).items()]
        hits = self._text_hits(fields)
        if vector is not None and self._exemplars:
            item = np.asarray(vector, dtype=np.float32).reshape(1, -1)
            exemplars, matrix, unresolved = self._exemplar_matrix(None, item)
            wrong_dim = {k: v for k, v in unresolved.items() if "dimensions" in v}
            if wrong_dim:
                entry_id, reason = next(iter(wrong_dim.items()))
                raise FeatureLibraryError(f"match_one: vector does not fit exemplar {entry_id!r}: {reason}")
            if matrix is not None:
                scores = matrix @ _unit_rows(item)[0]
                for entry, score in zip(exemplars, scores, strict=True):
                    hits[entry.id] = np.array([score >= entry.threshold - 1e-6])
        for entry in self._entries:
            mask = hits.get(entry.id)
            if mask is not None and mask[0]:
                return entry.id
        return None


# -- file-backed library: one JSON entry per line ---------------------------------------------------
def load_library(path: str | Path) -> FeatureLibrary:
    """Read a JSON Lines library; errors name the file and line. A missing file is an empty library."""
    path = Path(path)
    if not path.exists():
        return FeatureLibrary()
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FeatureLibraryError(f"{path}: cannot read the feature library: {exc}") from None
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FeatureLibraryError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
        try:
            entry = validate_entry(raw)
        except FeatureLibraryError as exc:
            raise FeatureLibraryError(f"{path}:{number}: {exc}") from None
        if entry.id in seen:
            raise FeatureLibraryError(f"{path}:{number}: duplicate entry id {entry.id!r}")
        seen.add(entry.id)
        entries.append(entry)
    return FeatureLibrary(entries)


def save_library(library: FeatureLibrary, path: str | Path) -> Path:
    """Write the library as JSON Lines, atomically: readers see the old file or the new one."""
    path = Path(path)
    text = "".join(entry.model_dump_json() + "\n" for entry in library.entries)
    return atomic_write_text(path, text)


def atomic_write_text(path: Path, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, fsync it, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
