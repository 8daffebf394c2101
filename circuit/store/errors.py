"""Store failures, typed: what the gateway and the CLI act on, whichever database is behind.

    StoreError                 the message names the database (never its password)
    ├── StoreUnavailable       locked, unreachable, read-only, out of disk: may pass, retry later
    ├── NotCircuitDatabase     there is a file or database there, but not Circuit's tables
    ├── SchemaOutdated         Circuit's tables, from an older version: the gateway migrates them
    └── StoreRejected          data the database will not take (a value out of range): do not retry

Each backend maps its driver's exceptions to these in one place (`translating`), so no caller
matches sqlite3 message text or psycopg module names.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar


class StoreError(Exception):
    """A store failure."""


class StoreUnavailable(StoreError):
    """The database cannot answer now (locked, unreachable, read-only, disk full)."""


class NotCircuitDatabase(StoreError):
    """The database has none of Circuit's tables (or is not a database at all)."""


class SchemaOutdated(StoreError):
    """Circuit's tables from an older version; starting a gateway migrates them."""


class StoreRejected(StoreError):
    """The database refuses the data itself: retrying the same rows will not help."""


Mapper = Callable[[BaseException], StoreError | None]
T = TypeVar("T")

#: Methods left unwrapped: connection helpers whose failures surface in their callers.
_UNWRAPPED = frozenset({"connection", "close"})


def translating(mapper: Mapper) -> Callable[[type[T]], type[T]]:
    """A class decorator: every public method of the store raises typed StoreErrors, mapped
    from its driver's exceptions by `mapper` (None: not a store failure, left as it is)."""

    def decorate(cls: type[T]) -> type[T]:
        names = {name for klass in cls.__mro__ for name in vars(klass)}
        for name in names:
            # The member the class really has (its own override before a mixin's), unbound.
            member = inspect.getattr_static(cls, name)
            if name.startswith("_") or name in _UNWRAPPED or not inspect.isfunction(member):
                continue
            setattr(cls, name, _wrapped(member, mapper))
        return cls

    return decorate


def _wrapped(method: Callable[..., Any], mapper: Mapper) -> Callable[..., Any]:
    if getattr(method, "_store_errors_typed", False):
        return method

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            typed = mapper(exc)
            if typed is None:
                raise
            raise typed from exc

    call._store_errors_typed = True  # type: ignore[attr-defined]
    return call
