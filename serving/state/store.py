"""Reads and writes of the state database, one method per question the service asks.

SQLAlchemy Core, not the ORM: the request path makes a handful of small queries per request
and holds plain tuples, not mapped objects.

Round trips (PostgreSQL): reads and single-statement writes run on autocommit connections, so a
read is one round trip per statement and a write one statement (no BEGIN / COMMIT / ROLLBACK
around them); writes of several statements run in one transaction. Concurrent writers are safe by
construction, each with one atomic statement: events are inserted with ON CONFLICT DO NOTHING
RETURNING (exact counts), usage and state versions are INSERT ... ON CONFLICT DO UPDATE computing
the new value in SQL from the row the database holds (no read-modify-write in Python).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import (
    Boolean,
    Float,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    extract,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from served.query import Feedback, ServedPage, UserState
from serving import metrics
from serving.state import db
from serving.state.prepared import Prepared

log = logging.getLogger("recsys.serving")

TAG_STATES = ("deleted", "added", "not_interested")
# The admin-edited state every worker keeps a copy of (interventions, the feature library), by the
# names of its version rows: a worker reloads its copy when one moved.
SHARED_STATE_VERSIONS = ("interventions", "features")
# Event types that say the user engaged with an item (an impression only says it was shown): the
# sequential candidate source reads these, in time order, after the user's stored history.
ENGAGEMENT_EVENTS = ("click", "like", "share")
# The sequential source reads the user's latest events only (newest first, by the index on user and
# time): what they engaged with lately. Unbounded, a user posting events without end (1,000 per
# request) made each of their lists scan them all (200,000 events: 2.2 s per list on SQLite). What
# they have seen, however long ago, a list reads from the seen set (`db.seen_items`, one row per item).
MAX_EVENTS_READ = 2000


def _latest_events():
    """The user's latest `MAX_EVENTS_READ` events (item, type, time), as a subquery."""
    e = db.events
    return (select(e.c.item_id, e.c.type, e.c.ts).where(e.c.user_id == bindparam("user_id"))
            .order_by(e.c.ts.desc()).limit(MAX_EVENTS_READ).subquery("latest_events"))


# The request path's statements, built once: executing a prebuilt statement only binds values,
# three times faster than building it per call (measured: 0.05 vs 0.15 ms for `load_user`).
_pages = db.served_pages
_SESSION_PAGES = (
    select(_pages.c.page, _pages.c.session_id, _pages.c["items"], _pages.c.categories, _pages.c.contents)
    .where(and_(_pages.c.user_id == bindparam("user_id"), _pages.c.surface == bindparam("surface"),
                _pages.c.session_id == bindparam("session_id"), _pages.c.page < bindparam("before_page")))
    .order_by(_pages.c.page, _pages.c.id)
)
_LATEST_SESSION = (select(_pages.c.session_id)
                   .where(and_(_pages.c.user_id == bindparam("user_id"), _pages.c.surface == bindparam("surface")))
                   .order_by(_pages.c.id.desc()).limit(1))
_RECENT_ITEMS = (select(_pages.c["items"]).where(_pages.c.user_id == bindparam("user_id"))
                 .order_by(_pages.c.id.desc()).limit(bindparam("pages", type_=Integer)))
_RECORD_PAGE = insert(_pages)
_RECORD_PAGE_COLUMNS = ("request_id", "user_id", "surface", "session_id", "page", "items", "categories", "contents",
                        "created_at")
_VERSIONS = select(db.state_versions.c.name, db.state_versions.c.version).where(
    db.state_versions.c.name.in_(bindparam("names", expanding=True)))
_EVENT_ITEMS = select(db.seen_items.c.item_id).where(db.seen_items.c.user_id == bindparam("user_id"))
_USAGE = select(db.usage.c.last_activity, db.usage.c.seconds_used, db.usage.c.continuous_since).where(
    and_(db.usage.c.user_id == bindparam("user_id"), db.usage.c.day == bindparam("day")))


def _load_user_statement():
    """Profile, settings, tags, feedback and history erasure of one user in ONE statement (one round
    trip), a UNION ALL of three parts named in column `part`: "user", a one-row table of the id joined
    to the profile, the settings and each tag (a row per tag; profile and settings repeated, NULL when
    absent); "feedback", a row per feedback in the same columns: item id in `profile`, kind in
    `settings`, category in `tag`, the served list's request id in `state`, and `created_at`; and
    "erasure", the time of the user's latest history erasure in `created_at` (no row: never erased)."""
    profiles, settings, tags, feedback = db.user_profiles, db.user_settings, db.user_tags, db.user_feedback
    erasures = db.history_erasures
    asked = select(cast(bindparam("user_id"), String).label("user_id")).subquery("asked")
    no_bool = cast(null(), Boolean)
    user = (
        select(literal_column("'user'", String).label("part"), profiles.c.user_id.label("profile"), profiles.c.age,
               settings.c.user_id.label("settings"), settings.c.personalization, settings.c.minor_mode,
               settings.c.elderly_mode, settings.c.broaden_feed, tags.c.tag, tags.c.state,
               cast(null(), db.UTCDateTime()).label("created_at"))
        .select_from(asked.outerjoin(profiles, profiles.c.user_id == asked.c.user_id)
                     .outerjoin(settings, settings.c.user_id == asked.c.user_id)
                     .outerjoin(tags, tags.c.user_id == asked.c.user_id))
    )
    given = (select(literal_column("'feedback'", String), feedback.c.item_id, cast(null(), Integer), feedback.c.kind,
                    no_bool, no_bool, no_bool, no_bool, feedback.c.category, feedback.c.request_id, feedback.c.created_at)
             .where(feedback.c.user_id == bindparam("user_id")))
    str_null = cast(null(), String)
    erased = (select(literal_column("'erasure'", String), str_null, cast(null(), Integer), str_null, no_bool, no_bool,
                     no_bool, no_bool, str_null, str_null, erasures.c.erased_at)
              .where(erasures.c.user_id == bindparam("user_id")))
    return union_all(user, given, erased)


_USER_PARTS = ("user", "feedback", "erasure")  # the parts of `_LOAD_USER`


_LOAD_USER = _load_user_statement()


@dataclass(frozen=True)
class RequestState:
    """What the request path reads about one user and request, in one statement (`request_state`)."""

    versions: tuple[int, ...]  # of the names asked for, 0 for one never bumped
    session_id: str | None  # the session asked for, else the latest on this surface (page > 0), else None
    earlier_pages: list[ServedPage]  # this session's pages before the one asked for, in page order
    recent_items: list[int]  # items of the user's last pages, newest page first (personal only)
    event_items: list[str]  # every item the user has an event for, distinct: the seen set (personal only)
    engaged_items: list[str] = field(default_factory=list)  # items of engagement events, by latest event, oldest first (personal only)


def _request_state_statement(personal: bool, session: str | None):
    """One UNION ALL over the state a list needs, each row tagged with what it is: the state
    versions, this session's earlier pages (`session`: "given" the request's session id, "latest"
    the newest on the surface, None: page 0 reads none), and when `personal` the recent pages' items,
    the event items (the seen set: every item of any event, however old), and the items of
    engagement events (not impressions) among the latest `MAX_EVENTS_READ` events with their latest
    time. JSON columns come back as text, decoded by `request_state`."""
    pages, versions = db.served_pages, db.state_versions
    text_null, int_null, time_null = cast(null(), Text), cast(null(), Integer), cast(null(), db.UTCDateTime())

    def tagged(kind: str):
        return literal_column(f"'{kind}'", String).label("kind")

    parts = [select(tagged("version"), versions.c.version.label("number"), int_null.label("row_id"),
                    versions.c.name.label("name"), text_null.label("items"), text_null.label("categories"),
                    text_null.label("contents"), time_null.label("stamp"))
             .where(versions.c.name.in_(bindparam("names", expanding=True)))]
    if session is not None:
        latest = (select(pages.c.session_id)
                  .where(and_(pages.c.user_id == bindparam("user_id"), pages.c.surface == bindparam("surface")))
                  .order_by(pages.c.id.desc()).limit(1).scalar_subquery())
        wanted = bindparam("session_id", type_=String) if session == "given" else latest
        parts.append(select(tagged("page"), pages.c.page, pages.c.id, pages.c.session_id, cast(pages.c["items"], Text),
                            cast(pages.c.categories, Text), cast(pages.c.contents, Text), time_null)
                     .where(and_(pages.c.user_id == bindparam("user_id"), pages.c.surface == bindparam("surface"),
                                 pages.c.session_id == wanted, pages.c.page < bindparam("before_page"))))
        if session == "latest":
            parts.append(select(tagged("latest"), int_null, int_null, latest, text_null, text_null, text_null, time_null))
    if personal:
        recent = (select(pages.c.id, pages.c["items"]).where(pages.c.user_id == bindparam("user_id"))
                  .order_by(pages.c.id.desc()).limit(bindparam("pages", type_=Integer)).subquery("recent"))
        parts.append(select(tagged("recent"), int_null, recent.c.id, text_null, cast(recent.c["items"], Text), text_null,
                            text_null, time_null))
        seen = db.seen_items  # every item the user has an event for, one row each (not bounded by MAX_EVENTS_READ)
        parts.append(select(tagged("event"), int_null, int_null, seen.c.item_id, text_null, text_null, text_null, time_null)
                     .where(seen.c.user_id == bindparam("user_id")))
        latest = _latest_events()  # bounded: MAX_EVENTS_READ
        # What the user engaged with, for the sequential candidate source: each item once, at its latest event.
        parts.append(select(tagged("engaged"), int_null, int_null, latest.c.item_id, text_null, text_null, text_null,
                            func.max(latest.c.ts))
                     .where(latest.c.type.in_(ENGAGEMENT_EVENTS))
                     .group_by(latest.c.item_id))
    return union_all(*parts)


_REQUEST_STATE = {(personal, session): _request_state_statement(personal, session)
                  for personal in (False, True) for session in (None, "given", "latest")}


@dataclass(frozen=True)
class HistoryPage:
    """A page of a user's stored events for their export (`StateStore.history`)."""

    events: list[dict]  # event_id, item_id, type, ts; newest first
    events_stored: int  # all their events stored now
    seen_items: int  # items in their seen set
    erased_at: datetime | None  # their latest history erasure, None: never
    next_before: tuple[datetime, str] | None  # (ts, event_id) cursor of the next page, None: this is the last


@dataclass(frozen=True)
class ListRead:
    """What `list_state` reads for one list besides the user: the request's part of `request_state`."""

    surface: str
    session_id: str | None
    page: int
    recent_pages: int
    personal: bool
    version_names: tuple[str, ...]


@dataclass(frozen=True)
class ListState:
    """Everything a list reads from the state database, in ONE statement (`list_state`): the gate's
    read (the user; a minor's guardian controls and usage of the day, as `guardian` and
    `usage_state` return them) and hydrate's (`RequestState`)."""

    user: UserState
    guardian: tuple[str, object, datetime] | None
    usage: tuple[datetime, float, datetime | None] | None
    request: RequestState


def _list_state_statement(personal: bool, session: str | None):
    """`_LOAD_USER`, `_REQUEST_STATE[(personal, session)]`, the guardian and the usage of a day as
    the parts of one UNION ALL (one round trip), in one row shape: the load_user columns, then the
    request_state columns, then the usage's seconds and continuous start; a part leaves the others
    NULL; a request row's `stamp` rides in created_at. The guardian row is ("guardian", name=guardian id, items=controls as text,
    created_at=updated at); the usage row ("usage", created_at=last activity, seconds, since)."""
    user, request = _LOAD_USER.subquery("user_part"), _REQUEST_STATE[(personal, session)].subquery("request_part")
    guardians, usage = db.guardians, db.usage
    text_null, str_null, int_null = cast(null(), Text), cast(null(), String), cast(null(), Integer)
    bool_null, time_null, float_null = cast(null(), Boolean), cast(null(), db.UTCDateTime()), cast(null(), Float)

    def padded(part: str, *, name=str_null, items=text_null, created_at=time_null, seconds=float_null, since=time_null):
        return select(literal_column(f"'{part}'", String), str_null, int_null, str_null, bool_null, bool_null,
                      bool_null, bool_null, str_null, str_null, created_at, int_null, int_null, name, items, text_null,
                      text_null, seconds, since)

    return union_all(
        select(*user.c, int_null.label("number"), int_null.label("row_id"), str_null.label("name"),
               text_null.label("items"), text_null.label("categories"), text_null.label("contents"),
               float_null.label("seconds"), time_null.label("since")),
        select(request.c.kind, str_null, int_null, str_null, bool_null, bool_null, bool_null, bool_null, str_null,
               str_null, request.c.stamp, request.c.number, request.c.row_id, request.c.name, request.c["items"],
               request.c.categories, request.c.contents, float_null, time_null),
        padded("guardian", name=guardians.c.guardian_id, items=cast(guardians.c.controls, Text),
               created_at=guardians.c.updated_at).where(guardians.c.minor_id == bindparam("user_id")),
        padded("usage", created_at=usage.c.last_activity, seconds=usage.c.seconds_used,
               since=usage.c.continuous_since).where(
            and_(usage.c.user_id == bindparam("user_id"), usage.c.day == bindparam("day"))),
    )


_LIST_STATE = {(personal, session): _list_state_statement(personal, session)
               for personal in (False, True) for session in (None, "given", "latest")}


def _page_lists(user_id: str, *texts: str) -> list[list[int]] | None:
    """The JSON lists of integers of one served page's columns, or None when a row cannot be read
    (a hand edit: SQLite checks no JSON): that page is skipped, logged and counted, and the user's
    next lists are made without it instead of failing."""
    try:
        values = [json.loads(text) for text in texts]
    except (TypeError, ValueError):
        values = []
    if len(values) == len(texts) and all(isinstance(v, list) and all(type(x) is int for x in v) for v in values):
        return values
    log.warning("a served page of %s is unreadable and skipped: %.80r", user_id, texts)
    metrics.UNREADABLE_READS.labels("served_page").inc()
    return None


def _user_from_rows(user_id: str, rows) -> UserState:
    """The `UserState` of `_LOAD_USER`'s rows (parts "user", "feedback" and "erasure")."""
    feedback = sorted((row for row in rows if row.part == "feedback"), key=lambda row: row.created_at)
    erased_at = next((row.created_at for row in rows if row.part == "erasure"), None)
    rows = [row for row in rows if row.part == "user"]
    first = rows[0]
    known_settings = first.settings is not None
    return UserState(
        user_id=user_id,
        known=first.profile is not None or known_settings,
        age=first.age,
        personalization=first.personalization if known_settings else True,
        minor_mode=first.minor_mode if known_settings else None,
        tag_states={row.tag: row.state for row in rows if row.tag is not None},
        elderly_mode=first.elderly_mode if known_settings else None,
        broaden_feed=bool(first.broaden_feed) if known_settings else False,
        feedback=tuple(Feedback(r.profile, r.settings, r.tag, r.created_at, r.state) for r in feedback),
        history_erased_at=erased_at,
    )


def _request_params(user_id: str, surface: str, session_id: str | None, page: int, recent_pages: int,
                    version_names: tuple[str, ...]) -> dict:
    return {"names": list(version_names), "user_id": user_id, "surface": surface, "session_id": session_id,
            "before_page": page, "pages": max(int(recent_pages), 1)}


def _request_state_from_rows(user_id: str, rows: list[tuple], *, session_id: str | None, recent_pages: int,
                             personal: bool, version_names: tuple[str, ...]) -> RequestState:
    """The `RequestState` of `_REQUEST_STATE`'s rows (kind, number, row_id, name, items, categories, contents, stamp)."""
    personal_recent = personal and recent_pages > 0
    found: dict[str, int] = {}
    pages: list[tuple[int, int, str, str, str, str]] = []
    recent: list[tuple[int, str]] = []
    events: list[str] = []
    engaged: list[tuple[datetime, str]] = []
    latest = None
    for kind, number, row_id, name, items, categories, contents, stamp in rows:
        if kind == "version":
            found[name] = number
        elif kind == "page":
            pages.append((number, row_id, name, items, categories, contents))
        elif kind == "latest":
            latest = name
        elif kind == "recent":
            recent.append((row_id, items))
        elif kind == "engaged":
            engaged.append((stamp, name))
        else:
            events.append(name)
    pages.sort(key=lambda row: (row[0], row[1]))  # by page, then as written (as `session_pages`)
    recent.sort(key=lambda row: -row[0])  # newest page first
    earlier = []
    for number, _, sid, *columns in pages:
        decoded = _page_lists(user_id, *columns)
        if decoded is not None:
            earlier.append(ServedPage(number, sid, *decoded))
    recent_items: list[int] = []
    if personal_recent:
        for _, items in recent:
            decoded = _page_lists(user_id, items)
            recent_items.extend(decoded[0] if decoded is not None else [])
    return RequestState(
        versions=tuple(found.get(name, 0) for name in version_names),
        session_id=session_id if session_id is not None else latest,
        earlier_pages=earlier,
        recent_items=recent_items,
        event_items=events if personal else [],
        engaged_items=[item for _, item in sorted(engaged)] if personal else [],
    )


def _json_or_text(text: str | None) -> object:
    """Stored JSON decoded; text that is not JSON (a hand edit on SQLite) as that text, which no
    model accepts, so the caller skips and counts it like any other unreadable record."""
    try:
        return json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text


class StateStore:
    """The service's state, shared by every worker through the database."""

    def __init__(self, engine: Engine):
        self.engine = engine
        dialect = engine.dialect.name
        self._upsert = _upsert_for(dialect)
        # PostgreSQL: the same pool, connections in autocommit mode (see the module docstring).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT") if dialect == "postgresql" else None
        self._bump_statement = _bump_statement(dialect)
        self._add_usage_statement = _add_usage_statement(dialect)
        self._charge_usage_statement = _add_usage_statement(dialect, within_budget=True)
        # The two statements of every list (its one read, its page), prepared for this dialect
        # (serving/state/prepared.py: the same SQL, values and rows as `conn.execute`, without its per-call work).
        # A read is prepared for the number of state versions it asks for (the request path always
        # asks for SHARED_STATE_VERSIONS), on first use.
        self._list_state: dict[tuple[bool, str | None, int], Prepared] = {}
        self._record_page = Prepared(_RECORD_PAGE, engine.dialect, column_keys=_RECORD_PAGE_COLUMNS)

    def _read(self) -> Connection:
        """A connection for reads (autocommit on PostgreSQL: no transaction to open and roll back)."""
        return (self._autocommit or self.engine).connect()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A connection for a write of ONE statement: autocommitted by the database on PostgreSQL
        (one round trip), in a transaction committed at the end on SQLite."""
        if self._autocommit is not None:
            with self._autocommit.connect() as conn:
                yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    # -- users -------------------------------------------------------------------------------
    def load_user(self, user_id: str) -> UserState:
        """Profile, settings, tag decisions and feedback (oldest first) of a user, in one statement."""
        with self._read() as conn:
            rows = conn.execute(_LOAD_USER, {"user_id": user_id}).all()
        return _user_from_rows(user_id, rows)

    def seed_profiles(self, rows: list[dict], source: str) -> int:
        """Insert the profiles (user_id, age, created_at) of a model's users that are not there
        yet, once per `source` (the model's dataset fingerprint): a model trained on other data
        brings its users, a restart with the same data does not insert again. Profiles already
        there (and users' settings) are kept. Returns how many rows were offered."""
        marker = f"profiles:{source}"
        if not rows or self.versions(marker)[0]:
            return 0
        with self.engine.begin() as conn:
            for start in range(0, len(rows), 10_000):  # two workers may seed at once: conflicts are ignored
                conn.execute(self._insert_ignore(db.user_profiles), rows[start : start + 10_000])
            self._bump(conn, marker)
        return len(rows)

    def user_exists(self, user_id: str) -> bool:
        with self._read() as conn:
            return conn.execute(
                select(db.user_profiles.c.user_id).where(db.user_profiles.c.user_id == user_id)
            ).first() is not None or conn.execute(
                select(db.user_settings.c.user_id).where(db.user_settings.c.user_id == user_id)
            ).first() is not None

    def put_settings(self, user_id: str, now: datetime, personalization: bool | None, minor_mode: bool | None,
                     clear_minor_mode: bool = False, *, elderly_mode: bool | None = None, clear_elderly_mode: bool = False,
                     broaden_feed: bool | None = None) -> UserState:
        """Change the settings given (None: keep; `clear_minor_mode`/`clear_elderly_mode`: back to not
        set), in one atomic upsert: two concurrent changes of different settings both hold."""
        t = db.user_settings
        values = {"user_id": user_id, "personalization": True if personalization is None else personalization,
                  "minor_mode": None if clear_minor_mode else minor_mode,
                  "elderly_mode": None if clear_elderly_mode else elderly_mode, "broaden_feed": broaden_feed,
                  "updated_at": now}
        statement = _dialect_insert(self.engine.dialect.name)(t).values(**values)
        changed = ["updated_at"] + (["personalization"] if personalization is not None else []) + (
            ["minor_mode"] if clear_minor_mode or minor_mode is not None else []) + (
            ["elderly_mode"] if clear_elderly_mode or elderly_mode is not None else []) + (
            ["broaden_feed"] if broaden_feed is not None else [])
        statement = statement.on_conflict_do_update(index_elements=["user_id"],
                                                    set_={name: statement.excluded[name] for name in changed})
        with self._write() as conn:
            conn.execute(statement)
        return self.load_user(user_id)

    def set_tag_state(self, user_id: str, tag: str, state: str | None, now: datetime) -> None:
        """Record the user's decision about a tag; state None forgets the decision."""
        with self._write() as conn:
            if state is None:
                conn.execute(delete(db.user_tags).where(and_(db.user_tags.c.user_id == user_id, db.user_tags.c.tag == tag)))
                return
            values = {"state": state, "updated_at": now}
            conn.execute(self._upsert(db.user_tags, {"user_id": user_id, "tag": tag, **values}, ["user_id", "tag"], values))

    # -- negative feedback on served items (Art. 17 (draft 15)) ---------------------------------------
    def put_feedback(self, user_id: str, item_id: str, kind: str, request_id: str, category: str | None,
                     now: datetime) -> None:
        """Record (or replace: the latest word counts) the user's feedback on an item, one upsert."""
        values = {"kind": kind, "request_id": request_id, "category": category, "created_at": now}
        with self._write() as conn:
            conn.execute(self._upsert(db.user_feedback, {"user_id": user_id, "item_id": item_id, **values},
                                      ["user_id", "item_id"], values))

    def delete_feedback(self, user_id: str, item_id: str) -> bool:
        """Undo the user's feedback on an item; False when there was none."""
        t = db.user_feedback
        with self._write() as conn:
            return bool(conn.execute(delete(t).where(and_(t.c.user_id == user_id, t.c.item_id == item_id))).rowcount)

    # -- served pages (session de-duplication, dispersal across pages, recent impressions) -------
    def session_pages(self, user_id: str, surface: str, session_id: str, before_page: int) -> list[ServedPage]:
        with self._read() as conn:
            rows = conn.execute(_SESSION_PAGES, {"user_id": user_id, "surface": surface, "session_id": session_id,
                                                 "before_page": before_page}).all()
        return [ServedPage(r.page, r.session_id, r.items, r.categories, r.contents) for r in rows]

    def latest_session(self, user_id: str, surface: str) -> str | None:
        with self._read() as conn:
            row = conn.execute(_LATEST_SESSION, {"user_id": user_id, "surface": surface}).first()
        return row.session_id if row else None

    def recent_items(self, user_id: str, pages: int) -> list[int]:
        """Items shown to the user in their last `pages` served pages, any surface or session."""
        if pages <= 0:
            return []
        with self._read() as conn:
            rows = conn.execute(_RECENT_ITEMS, {"user_id": user_id, "pages": int(pages)}).all()
        return [item for row in rows for item in row.items]

    def request_state(self, user_id: str, surface: str, *, session_id: str | None, page: int, recent_pages: int,
                      personal: bool, version_names: tuple[str, ...]) -> RequestState:
        """Everything the request path reads for one list, in ONE statement (one round trip): the
        versions of `version_names`; for `page` > 0 the session's earlier pages (of `session_id`, or
        when None of the user's latest session on `surface`); and when `personal` the items of the
        user's last `recent_pages` pages and of their events. The same answers as `versions`,
        `latest_session`, `session_pages`, `recent_items` and `event_items` asked one by one."""
        session = None if page <= 0 else ("given" if session_id is not None else "latest")
        with self._read() as conn:
            rows = conn.execute(_REQUEST_STATE[(personal, session)],
                                _request_params(user_id, surface, session_id, page, recent_pages, version_names)).all()
        return _request_state_from_rows(user_id, [tuple(row) for row in rows], session_id=session_id,
                                        recent_pages=recent_pages, personal=personal, version_names=version_names)

    def list_state(self, user_id: str, day: str | date, read: ListRead) -> ListState:
        """The gate's read of the user (`load_user`, and the `guardian` and `usage_state` of `day` a
        minor is decided on) and hydrate's (`request_state` of `read`) in ONE statement: a list costs
        one read round trip. The same answers as those methods asked one by one."""
        session = None if read.page <= 0 else ("given" if read.session_id is not None else "latest")
        params = {**_request_params(user_id, read.surface, read.session_id, read.page, read.recent_pages,
                                    read.version_names), "day": _day(day)}
        key = (read.personal, session, len(read.version_names))
        prepared = self._list_state.get(key)
        if prepared is None:  # two threads may both prepare it: the same statement, either kept
            prepared = self._list_state.setdefault(key, Prepared(_LIST_STATE[key[:2]], self.engine.dialect,
                                                                 sizes={"names": len(read.version_names)}))
        with self._read() as conn:
            rows = prepared.rows(conn, params)
        user_rows = [row for row in rows if row.part in _USER_PARTS]
        guardian = usage = None
        request_rows = []
        for row in rows:
            if row.part == "guardian":
                guardian = (row.name, _json_or_text(row.items), row.created_at)
            elif row.part == "usage":
                usage = (row.created_at, float(row.seconds), row.since)
            elif row.part not in _USER_PARTS:
                request_rows.append((row.part, row.number, row.row_id, row.name, row.items, row.categories, row.contents,
                                     row.created_at))
        request = _request_state_from_rows(user_id, request_rows, session_id=read.session_id,
                                           recent_pages=read.recent_pages, personal=read.personal,
                                           version_names=read.version_names)
        return ListState(user=_user_from_rows(user_id, user_rows), guardian=guardian, usage=usage, request=request)

    def record_page(self, *, request_id: str, user_id: str, surface: str, session_id: str, page: int,
                    items: list[int], categories: list[int], contents: list[int], now: datetime) -> None:
        with self._write() as conn:
            self._record_page.run(conn, {"request_id": request_id, "user_id": user_id, "surface": surface,
                                         "session_id": session_id, "page": page, "items": items,
                                         "categories": categories, "contents": contents, "created_at": now})

    def recent_requests(self, user_id: str, limit: int) -> list[dict]:
        """The user's last `limit` served pages (request id, surface, page, time), newest first:
        the privacy center reads each list back from the log by its request id."""
        query = (select(_pages.c.request_id, _pages.c.surface, _pages.c.page, _pages.c.created_at)
                 .where(_pages.c.user_id == user_id).order_by(_pages.c.id.desc()).limit(max(0, int(limit))))
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    # -- versions of shared, admin-edited state -----------------------------------------------------
    def version(self, name: str) -> int:
        return self.versions(name)[0]

    def versions(self, *names: str) -> tuple[int, ...]:
        """The versions of `names` (0 for one never bumped), in one query."""
        with self._read() as conn:
            found = dict(conn.execute(_VERSIONS, {"names": list(names)}).tuples().all())
        return tuple(found.get(name, 0) for name in names)

    def _bump(self, conn: Connection, name: str) -> None:
        """Version + 1 (1 for a new name), one atomic statement: concurrent bumps all count."""
        conn.execute(self._bump_statement, {"name": name})

    # -- interventions (Art. 11, Art. 14 (draft 13)) ------------------------------------------------------------------
    def add_intervention(self, values: dict) -> dict:
        with self.engine.begin() as conn:
            new_id = conn.execute(insert(db.interventions).values(**values)).inserted_primary_key[0]
            self._bump(conn, "interventions")
        return self.get_intervention(new_id)

    def get_intervention(self, intervention_id: int) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(db.interventions).where(db.interventions.c.id == intervention_id)).first()
        return dict(row._mapping) if row else None

    def list_interventions(self, now: datetime | None = None, include_inactive: bool = False) -> list[dict]:
        t = db.interventions
        query = select(t).order_by(t.c.id)
        if not include_inactive:
            query = query.where(t.c.revoked_at.is_(None))
            if now is not None:
                query = query.where(or_(t.c.expires_at.is_(None), t.c.expires_at > now))
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def revoke_intervention(self, intervention_id: int, operator: str, now: datetime) -> dict | None:
        t = db.interventions
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(t).where(and_(t.c.id == intervention_id, t.c.revoked_at.is_(None))).values(revoked_at=now, revoked_by=operator)
            ).rowcount
            if changed:
                self._bump(conn, "interventions")
        return self.get_intervention(intervention_id)

    def decide_intervention(self, intervention_id: int, status: str, by: str, reason: str, now: datetime) -> dict | None:
        """Approve (status "active") or reject a pending proposal, only if it is still pending (two
        concurrent decisions: one wins, the other gets None)."""
        t = db.interventions
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(t).where(and_(t.c.id == intervention_id, t.c.status == "pending", t.c.revoked_at.is_(None)))
                .values(status=status, decided_by=by, decided_at=now, decision_reason=reason)
            ).rowcount
            if changed:
                self._bump(conn, "interventions")
        return self.get_intervention(intervention_id) if changed else None

    # -- complaints (Art. 22 (draft 26)) -----------------------------------------------------------------------
    def add_complaint(self, values: dict) -> dict:
        values = {"id": uuid.uuid4().hex, **values}
        with self._write() as conn:
            conn.execute(insert(db.complaints).values(**values))
        return self.get_complaint(values["id"])

    def get_complaint(self, complaint_id: str) -> dict | None:
        with self._read() as conn:
            row = conn.execute(select(db.complaints).where(db.complaints.c.id == complaint_id)).first()
        return dict(row._mapping) if row else None

    def list_complaints(self, status: str | None = None, limit: int = 100, user_id: str | None = None) -> list[dict]:
        query = select(db.complaints).order_by(db.complaints.c.created_at.desc()).limit(limit)
        if status:
            query = query.where(db.complaints.c.status == status)
        if user_id is not None:
            query = query.where(db.complaints.c.user_id == user_id)
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(query).all()]

    def update_complaint(self, complaint_id: str, expected_status: str, values: dict) -> dict | None:
        """Change a complaint only if it is still in `expected_status` (no lost concurrent update)."""
        t = db.complaints
        with self._write() as conn:
            changed = conn.execute(
                update(t).where(and_(t.c.id == complaint_id, t.c.status == expected_status)).values(**values)
            ).rowcount
        return self.get_complaint(complaint_id) if changed else None

    # -- events and usage (Art. 14 (draft 13), Art. 18 (draft 16)) ------------------------------------------------------------
    def add_events(self, rows: list[dict]) -> int:
        """Insert events whose event_id is new; returns how many were new (retries are idempotent).

        One INSERT ... ON CONFLICT DO NOTHING RETURNING: the database says which rows it inserted,
        so concurrent posts of the same ids count each id exactly once between them. Rows go in in
        event_id order: two batches sharing ids lock them in the same order and cannot deadlock.
        The (user, item) pairs of the inserted events join the seen set (`db.seen_items`) in the
        same transaction, INSERT ... ON CONFLICT DO NOTHING in (user, item) order, after every
        event: a batch waits on another's seen rows only once its own events are in, so no cycle."""
        if not rows:
            return 0
        first: dict[str, dict] = {}
        for row in rows:
            first.setdefault(row["event_id"], row)  # the first copy of each id
        unique = [first[event_id] for event_id in sorted(first)]
        dialect_insert = _dialect_insert(self.engine.dialect.name)
        e = db.events
        statement = dialect_insert(e).on_conflict_do_nothing().returning(e.c.event_id, e.c.user_id, e.c.item_id)
        inserted: list[tuple[str, str, str]] = []
        with self.engine.begin() as conn:
            for start in range(0, len(unique), 500):
                inserted += conn.execute(statement, unique[start : start + 500]).tuples().all()
            seen = [{"user_id": user, "item_id": item} for user, item in sorted({(u, i) for _, u, i in inserted})]
            for start in range(0, len(seen), 500):
                conn.execute(dialect_insert(db.seen_items).on_conflict_do_nothing(), seen[start : start + 500])
        return len(inserted)

    def history(self, user_id: str, limit: int, before: tuple[datetime, str] | None = None) -> HistoryPage:
        """One page of the user's stored events, newest first (by time, then event id), at most
        `limit` of them: those strictly before the cursor `before` (a page's `next_before`); with the
        number of their events stored, the size of their seen set and their latest erasure. The page
        is a range of the index on user and time, however many events the user has."""
        e, seen, erasures = db.events, db.seen_items, db.history_erasures
        query = select(e.c.event_id, e.c.item_id, e.c.type, e.c.ts).where(e.c.user_id == user_id)
        if before is not None:
            ts, event_id = before
            query = query.where(or_(e.c.ts < ts, and_(e.c.ts == ts, e.c.event_id < event_id)))
        query = query.order_by(e.c.ts.desc(), e.c.event_id.desc()).limit(limit + 1)
        with self._read() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
            stored = conn.execute(select(func.count()).select_from(e).where(e.c.user_id == user_id)).scalar_one()
            seen_count = conn.execute(select(func.count()).select_from(seen).where(seen.c.user_id == user_id)).scalar_one()
            erased_at = conn.execute(select(erasures.c.erased_at).where(erasures.c.user_id == user_id)).scalar()
        more = len(rows) > limit
        rows = rows[:limit]
        return HistoryPage(events=rows, events_stored=int(stored), seen_items=int(seen_count), erased_at=erased_at,
                           next_before=(rows[-1]["ts"], rows[-1]["event_id"]) if more else None)

    def erase_history(self, user_id: str, now: datetime) -> tuple[int, int, datetime]:
        """Delete the user's events and their seen set and record the erasure at `now`, in ONE
        transaction: (events deleted, seen items deleted, erasure time). A second erasure deletes
        what was stored since and moves the marker to its own time (the latest erasure).

        On PostgreSQL one statement (the deletes as data-modifying CTEs of the marker's upsert): its
        one snapshot sees a concurrent `add_events` batch whole or not at all, so an event and its
        seen row are erased together or kept together. SQLite runs one writer at a time: the first
        DELETE holds the write lock until the commit."""
        params = {"user_id": user_id, "now": now}
        if self.engine.dialect.name == "postgresql":
            with self._write() as conn:
                row = conn.execute(_ERASE_HISTORY_PG, params).one()
            return int(row.events), int(row.seen), row.erased_at
        e, seen, erasures = db.events, db.seen_items, db.history_erasures
        with self.engine.begin() as conn:
            events = conn.execute(delete(e).where(e.c.user_id == user_id)).rowcount
            seen_count = conn.execute(delete(seen).where(seen.c.user_id == user_id)).rowcount
            conn.execute(self._upsert(erasures, {"user_id": user_id, "erased_at": now}, ["user_id"], {"erased_at": now}))
        return int(events), int(seen_count), now

    def history_erasures(self, user_ids: list[str]) -> dict[str, datetime]:
        """The latest history erasure of each of `user_ids` who erased theirs (the others are absent)."""
        t = db.history_erasures
        with self._read() as conn:
            return dict(conn.execute(select(t.c.user_id, t.c.erased_at).where(t.c.user_id.in_(user_ids))).tuples().all())

    def event_items(self, user_id: str) -> list[str]:
        """Every item the user has an event for (any type): items they already know."""
        with self._read() as conn:
            return list(conn.execute(_EVENT_ITEMS, {"user_id": user_id}).scalars())

    def events_since(self, since: datetime) -> list[dict]:
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(select(db.events).where(db.events.c.ts >= since))]

    def trending_events(self, since: datetime, received_by: datetime) -> list[dict]:
        """The events a hot list at `received_by` reads: ts >= since, received by then (a list can be
        recomputed later from the same rows: events that arrive afterwards are not among them)."""
        e = db.events
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(
                select(e).where(and_(e.c.ts >= since, e.c.received_at <= received_by)))]

    def accounts(self, user_ids: list[str], before: datetime, received_by: datetime | None = None) -> list[dict]:
        """For the trending rules: each account's creation time (None: no profile) and how many
        distinct items it engaged in stored events before `before` (received by `received_by`)."""
        e = db.events
        created = self.profiles_created(user_ids)
        received = [] if received_by is None else [e.c.received_at <= received_by]
        with self._read() as conn:
            prior = dict(conn.execute(
                select(e.c.user_id, func.count(e.c.item_id.distinct()))
                .where(and_(e.c.user_id.in_(user_ids), e.c.ts < before, *received)).group_by(e.c.user_id)
            ).tuples().all())
        return [{"user_id": u, "created_at": created.get(u), "prior_events_items": int(prior.get(u, 0))} for u in user_ids]

    def profiles_created(self, user_ids: list[str]) -> dict[str, datetime | None]:
        with self._read() as conn:
            rows = conn.execute(
                select(db.user_profiles.c.user_id, db.user_profiles.c.created_at).where(db.user_profiles.c.user_id.in_(user_ids))
            ).all()
        return {r.user_id: r.created_at for r in rows}

    def get_usage(self, user_id: str, day: str | date) -> tuple[datetime, float] | None:
        """(last activity, seconds used) of the user's local `day`, None before any activity."""
        with self._read() as conn:
            row = conn.execute(_USAGE, {"user_id": user_id, "day": _day(day)}).first()
        return (row.last_activity, row.seconds_used) if row is not None else None

    def usage_state(self, user_id: str, day: str | date) -> tuple[datetime, float, datetime | None] | None:
        """(last activity, seconds used, start of the current continuous use) of the user's local
        `day`, None before any activity: what the gate decides a minor's request on."""
        with self._read() as conn:
            row = conn.execute(_USAGE, {"user_id": user_id, "day": _day(day)}).first()
        return (row.last_activity, float(row.seconds_used), row.continuous_since) if row is not None else None

    def put_usage(self, user_id: str, day: str | date, last_activity: datetime, seconds_used: float) -> None:
        """Overwrite a day's usage (tests, corrections). Counting activity is `add_usage`."""
        values = {"last_activity": last_activity, "seconds_used": seconds_used}
        with self._write() as conn:
            conn.execute(self._upsert(db.usage, {"user_id": user_id, "day": _day(day), **values}, ["user_id", "day"], values))

    def add_usage(self, user_id: str, day: str | date, moment: datetime, gap_cap_s: float,
                  floor_s: float) -> tuple[datetime, float]:
        """Count one activity of a minor at `moment` (in their local `day`) into that day's usage and
        return the day's (last activity, seconds used) after it: `compliance.minors.add_activity`'s
        rule, computed by the database in one INSERT ... ON CONFLICT DO UPDATE, so concurrent
        activity on several workers never loses time. The first activity of the day counts
        `floor_s`; a later one the gap since the last activity when 0 < gap <= `gap_cap_s`, else
        `floor_s`; one not after the last activity changes nothing."""
        with self._write() as conn:
            row = conn.execute(self._add_usage_statement, {
                "user_id": user_id, "day": _day(day), "moment": moment, "cap_s": float(gap_cap_s), "floor_s": float(floor_s),
            }).one()
        return (row.last_activity, float(row.seconds_used))  # SQLite RETURNING can give 60 for 60.0

    def charge_usage(self, user_id: str, day: str | date, moment: datetime, gap_cap_s: float, floor_s: float,
                     budget_s: float) -> tuple[datetime, float] | None:
        """`add_usage`, only while the day's usage is below `budget_s`: the day's (last activity,
        seconds used) after counting the activity, or None (nothing written) when the budget was
        already spent. One statement (the upsert's DO UPDATE ... WHERE), so of concurrent requests
        at the budget edge on any number of workers, those the database counts after the budget is
        spent are told so; none is admitted on a stale read."""
        with self._write() as conn:
            row = conn.execute(self._charge_usage_statement, {
                "user_id": user_id, "day": _day(day), "moment": moment, "cap_s": float(gap_cap_s), "floor_s": float(floor_s),
                "budget_s": float(budget_s),
            }).first()
        return (row.last_activity, float(row.seconds_used)) if row is not None else None

    def continuous_since(self, user_id: str, day: str | date) -> datetime | None:
        """Start of the user's current continuous use on `day` (the rest reminder), None before any."""
        t = db.usage
        with self._read() as conn:
            return conn.execute(select(t.c.continuous_since).where(
                and_(t.c.user_id == user_id, t.c.day == _day(day)))).scalar()

    # -- guardians (minors mode, 2024 guideline) ------------------------------------------------------
    def link_guardian(self, minor_id: str, guardian_id: str, operator: str, now: datetime) -> None:
        """Make `guardian_id` the guardian of `minor_id` (an operator's act, after checking it
        offline); a new guardian starts with no controls of their own. Linking the guardian the
        minor already has changes nothing: their controls stay (an operator's repeated click must
        not loosen what the guardian set)."""
        t = db.guardians
        values = {"guardian_id": guardian_id, "controls": {}, "updated_at": now, "updated_by": operator}
        with self._write() as conn:
            conn.execute(self._upsert(t, {"minor_id": minor_id, **values}, ["minor_id"],
                                      {**values, "controls": case((t.c.guardian_id == guardian_id, t.c.controls),
                                                                  else_=literal({}, t.c.controls.type))}))

    def guardian(self, minor_id: str) -> tuple[str, object, datetime] | None:
        """(guardian id, stored controls, updated at) of a minor, None without a guardian. The
        controls are returned as stored, decoded from JSON here: the caller validates them
        (`minors.GuardianControls`). Text that is not JSON at all (a hand edit on SQLite, which
        does not check JSON columns) comes back as that text, which no model accepts, so the
        caller skips and counts it like any other unreadable record instead of failing."""
        t = db.guardians
        with self._read() as conn:
            row = conn.execute(select(t.c.guardian_id, cast(t.c.controls, Text).label("controls"), t.c.updated_at)
                               .where(t.c.minor_id == minor_id)).first()
        if row is None:
            return None
        return row.guardian_id, _json_or_text(row.controls), row.updated_at

    def minors_of(self, guardian_id: str) -> list[str]:
        """The minors in the care of `guardian_id`, sorted."""
        t = db.guardians
        with self._read() as conn:
            return list(conn.execute(select(t.c.minor_id).where(t.c.guardian_id == guardian_id).order_by(t.c.minor_id)).scalars())

    def put_guardian_controls(self, minor_id: str, guardian_id: str, controls: dict, now: datetime) -> bool:
        """Replace the controls of a minor whose guardian is `guardian_id`; False when not theirs."""
        t = db.guardians
        with self._write() as conn:
            changed = conn.execute(update(t).where(and_(t.c.minor_id == minor_id, t.c.guardian_id == guardian_id))
                                   .values(controls=controls, updated_at=now, updated_by=guardian_id)).rowcount
        return bool(changed)

    def usage_days(self, user_id: str, first_day: str | date) -> list[tuple[str, float]]:
        """(day, seconds used) of the user's days from `first_day` on, oldest first."""
        t = db.usage
        with self._read() as conn:
            rows = conn.execute(select(t.c.day, t.c.seconds_used).where(
                and_(t.c.user_id == user_id, t.c.day >= _day(first_day))).order_by(t.c.day))
            return [(r.day, float(r.seconds_used)) for r in rows]

    # -- feature library (Art. 9) -------------------------------------------------------------------
    def add_feature_entry(self, entry_id: str, entry: dict, now: datetime) -> bool:
        with self.engine.begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(insert(db.feature_entries).values(id=entry_id, entry=entry, created_at=now))
            except IntegrityError:
                return False
            self._bump(conn, "features")
        return True

    def remove_feature_entry(self, entry_id: str, operator: str, now: datetime) -> bool:
        t = db.feature_entries
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(t).where(and_(t.c.id == entry_id, t.c.removed_at.is_(None))).values(removed_at=now, removed_by=operator)
            ).rowcount
            if changed:
                self._bump(conn, "features")
        return bool(changed)

    def feature_entries(self) -> list[dict]:
        t = db.feature_entries
        with self._read() as conn:
            return [r.entry for r in conn.execute(select(t.c.entry).where(t.c.removed_at.is_(None)).order_by(t.c.created_at))]

    def _insert_ignore(self, table):
        if self.engine.dialect.name in ("sqlite", "postgresql"):
            dialect_insert = _dialect_insert(self.engine.dialect.name)
            return dialect_insert(table).on_conflict_do_nothing()
        return insert(table)


def _erase_history_pg():
    """`StateStore.erase_history` on PostgreSQL: one statement, the deletes counted in its RETURNING."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    e, seen, erasures = db.events, db.seen_items, db.history_erasures
    gone_events = delete(e).where(e.c.user_id == bindparam("user_id")).returning(e.c.event_id).cte("gone_events")
    gone_seen = delete(seen).where(seen.c.user_id == bindparam("user_id")).returning(seen.c.item_id).cte("gone_seen")
    marker = pg_insert(erasures).values(user_id=bindparam("user_id"), erased_at=bindparam("now", type_=db.UTCDateTime()))
    marker = marker.on_conflict_do_update(index_elements=[erasures.c.user_id], set_={"erased_at": marker.excluded.erased_at})
    return marker.returning(
        select(func.count()).select_from(gone_events).scalar_subquery().label("events"),
        select(func.count()).select_from(gone_seen).scalar_subquery().label("seen"),
        erasures.c.erased_at,
    ).add_cte(gone_events, gone_seen)


_ERASE_HISTORY_PG = _erase_history_pg()


def _dialect_insert(name: str):
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _day(day: str | date) -> str:
    return day.isoformat() if isinstance(day, date) else day


def _bump_statement(dialect: str):
    t = db.state_versions
    statement = _dialect_insert(dialect)(t).values(name=bindparam("name"), version=1)
    return statement.on_conflict_do_update(index_elements=[t.c.name], set_={"version": t.c.version + 1})


def _add_usage_statement(dialect: str, within_budget: bool = False):
    """The usage rule as one upsert; every SET expression reads the row as the database holds it
    (on PostgreSQL the latest committed version, the row locked until commit). `within_budget`:
    the existing row is updated only while its seconds_used is below the `budget_s` parameter (no
    row returned otherwise); a first activity of the day always counts."""
    t = db.usage
    floor = bindparam("floor_s", type_=Float)
    statement = _dialect_insert(dialect)(t).values(
        user_id=bindparam("user_id"), day=bindparam("day"), last_activity=bindparam("moment", type_=db.UTCDateTime()),
        seconds_used=floor, continuous_since=bindparam("moment", type_=db.UTCDateTime()),
    )
    new, old = statement.excluded.last_activity, t.c.last_activity
    if dialect == "postgresql":
        gap = cast(extract("epoch", new - old), Float)  # exact: microseconds, as timedelta.total_seconds()
    else:  # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): whole seconds and microseconds, in integers
        def micros(value):
            return cast(func.strftime("%s", value), Integer) * 1_000_000 + cast(func.substr(value, 21, 6), Integer)

        gap = cast(micros(new) - micros(old), Float) / 1_000_000.0
    return statement.on_conflict_do_update(
        index_elements=[t.c.user_id, t.c.day],
        where=(t.c.seconds_used < bindparam("budget_s", type_=Float)) if within_budget else None,
        set_={
            "seconds_used": case((gap <= 0, t.c.seconds_used), (gap <= bindparam("cap_s", type_=Float), t.c.seconds_used + gap),
                                 else_=t.c.seconds_used + floor),
            "last_activity": case((gap <= 0, old), else_=new),
            # continuous use goes on while the gaps stay within the cap; a pause starts a new run
            "continuous_since": case((gap <= bindparam("cap_s", type_=Float), func.coalesce(t.c.continuous_since, old)),
                                     else_=new),
        },
    ).returning(t.c.last_activity, t.c.seconds_used)


def _upsert_for(dialect: str):
    """An INSERT ... ON CONFLICT DO UPDATE builder for SQLite and PostgreSQL."""

    def upsert(table, values: dict, keys: list[str], update_values: dict):
        statement = _dialect_insert(dialect)(table).values(**values)
        return statement.on_conflict_do_update(index_elements=keys, set_=update_values)

    return upsert
