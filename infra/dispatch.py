"""Consumers' dispatch: each event to the handler of its type, and a run of events one handler takes
together (the rows of cases opened one after the other, written in one statement)."""

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")
H = TypeVar("H")


def handler_for_type(table: Mapping[type, H], kind: type) -> H | None:
    """The handler of `kind`, or of the type it is a later version of (a version's class subclasses
    the one it replaces), nearest first."""
    for cls in kind.__mro__:
        if cls in table:
            return table[cls]
    return None


async def in_runs(
    handled: Iterable[tuple[Callable[[T], Awaitable[None]], T]],
    run_of: Callable[[T], Awaitable[None]],
    together: Callable[[list[T]], Awaitable[None]],
) -> None:
    """Each (handler, item) in order, the items of `run_of` that come one after the other in one call
    of `together` (which does what `run_of` would to each, in order); the others one by one."""
    run: list[T] = []
    for handler, item in handled:
        if handler is run_of:
            run.append(item)
            continue
        if run:
            await together(run)
            run = []
        await handler(item)
    if run:
        await together(run)
