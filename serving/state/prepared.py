"""The request path's hot statements, compiled once per database dialect and run as driver SQL.

`conn.execute(statement)` spends most of its time in SQLAlchemy, not in the database: for the one
read of a list (a UNION ALL of ~10 parts, `store._LIST_STATE`) it hashes the statement's cache key,
expands its IN lists into the SQL text again, builds an execution context and wraps every row,
~130 us of CPU per call against ~20 us for the database itself (measured on SQLite). A
`Prepared` statement does that work once: the SQL text with its IN lists expanded to the sizes the
request path uses, the order of its parameters, and SQLAlchemy's own bind and result processors
of each parameter and column, so values go in and come back exactly as `conn.execute` would pass
and return them. It runs through `Connection.exec_driver_sql`, so the connection, its transaction
and error handling stay SQLAlchemy's, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement


class Prepared:
    """One statement for one dialect. `sizes` gives the length of each expanding IN parameter
    (e.g. {"names": 2}): the SQL text is expanded for those lengths, and a call must pass lists of
    those lengths (ValueError otherwise). Parameters not given to `run` keep the values the
    statement was built with (literals such as LIMIT 1 or the IN list of a constant tuple)."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, *, sizes: Mapping[str, int] | None = None,
                 column_keys: Sequence[str] | None = None):
        sizes = dict(sizes or {})
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        placeholders = {name: [f"prepared-{name}-{i}" for i in range(size)] for name, size in sizes.items()}
        sample = {name: compiled.binds[name].value for name in compiled.binds}
        sample.update(placeholders)
        expanded = compiled.construct_expanded_state(sample)
        self.sql: str = expanded.statement
        self.sizes = sizes
        # expanded name -> (the name given to `run`, the position in its list or None) for parameters given per call
        self._origin: dict[str, tuple[str, int | None]] = {}
        for name, values in placeholders.items():
            for position, placeholder in enumerate(values):
                key = next(k for k, v in expanded.parameters.items() if v == placeholder)
                self._origin[key] = (name, position)
        for name, bind in compiled.binds.items():  # a parameter without a value is given per call
            if name in expanded.parameters and name not in sizes and bind.required:
                self._origin[name] = (name, None)
        self._constants = {k: v for k, v in expanded.parameters.items() if k not in self._origin}
        self._order: list[str] | None = list(expanded.positiontup) if expanded.positiontup is not None else None
        self._bind: dict[str, Callable[[Any], Any]] = {}
        for key, (name, _) in self._origin.items():
            processor = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._bind[key] = processor
        for key in list(self._constants):
            base = key if key in compiled.binds else key.rsplit("_", 1)[0]
            if base in compiled.binds:
                processor = compiled.binds[base].type.dialect_impl(dialect).bind_processor(dialect)
                if processor is not None:
                    self._constants[key] = processor(self._constants[key])
        columns = list(getattr(statement, "selected_columns", ()))
        self._dialect = dialect
        self._types = [c.type.dialect_impl(dialect) for c in columns]
        self._row = namedtuple("PreparedRow", [c.key for c in columns], rename=True) if columns else None  # type: ignore[misc]
        # Result processors depend on the type the driver reports for each column (as SQLAlchemy
        # asks them): made from the first result's cursor description.
        self._result: list[Callable[[Any], Any] | None] | None = None
        self._processed: list[int] = []

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters for `params` (positional or named, as the dialect's paramstyle)."""
        for name, size in self.sizes.items():
            if len(params[name]) != size:
                raise ValueError(f"{name}: {len(params[name])} values, this statement is prepared for {size}")
        values = dict(self._constants)
        bind = self._bind
        for key, (name, position) in self._origin.items():
            value = params[name] if position is None else params[name][position]
            processor = bind.get(key)
            values[key] = processor(value) if processor is not None else value
        if self._order is None:
            return values
        return tuple(values[key] for key in self._order)

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Execute a statement that returns no rows."""
        conn.exec_driver_sql(self.sql, self.parameters(params))

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Execute and return every row as a named tuple of processed values (attribute access by
        column key, as SQLAlchemy's rows)."""
        result = conn.exec_driver_sql(self.sql, self.parameters(params))
        if self._result is None:
            description = result.cursor.description or []
            processors = [type_.result_processor(self._dialect, column[1])
                          for type_, column in zip(self._types, description, strict=True)]
            self._processed = [i for i, p in enumerate(processors) if p is not None]
            self._result = processors
        fetched = result.fetchall()
        make, processors, processed = self._row, self._result, self._processed
        assert make is not None, "rows() of a statement that selects no columns"
        out = []
        for raw in fetched:
            values = list(raw)
            for i in processed:
                values[i] = processors[i](values[i])  # type: ignore[misc]
            out.append(make._make(values))
        return out
