"""Simulated days for `leder demo`: the people of the demo (partners, the LAC, reviewers, the QA
panel, the Governance Group) are tasks that sleep until a day; the calendar moves the whole system's
clock to that day and wakes them, and moves on only when everyone has done that day's work and the
services have answered (a task waiting for another service counts as working). So what people do on
a day lands on that day, in the order cause and effect need, however fast the demo runs."""

import asyncio
from collections.abc import Coroutine
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from infra.clock import set_simulated_now


class Latch:
    """Something a task waits for that another task makes happen (a QA panel's decision)."""

    def __init__(self, calendar: "Calendar") -> None:
        self.calendar = calendar
        self._waiters: list[asyncio.Future[None]] = []
        self.value: Any = None

    def open(self, value: Any = None) -> None:
        self.value = value
        waiters, self._waiters = self._waiters, []
        self.calendar._wake(waiters)

    async def wait(self) -> Any:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        await self.calendar._blocked(future)
        return self.value


class Calendar:
    def __init__(self, clock_file: Path, first_day: date, day_starts: time = time(9)) -> None:
        self.clock_file = clock_file
        self.today = first_day
        self.day_starts = day_starts
        self.failures: list[BaseException] = []
        self._working = 0
        self._sleepers: dict[tuple[date, bool], list[asyncio.Future[None]]] = {}
        self._idle = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        return datetime.combine(self.today, self.day_starts, UTC)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._working += 1
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    async def until(self, day: date, late: bool = False) -> None:
        """Sleep until the calendar reaches `day` (at once if it has). `late`: after everyone else's
        work of that day is done (the LAC's allocation round, a QA panel), so what they see does not
        depend on who ran first."""
        if day < self.today or (day == self.today and not late):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.setdefault((day, late), []).append(future)
        await self._blocked(future)

    async def advance_to(self, day: date) -> None:
        """Move the system's clock to `day`, wake who sleeps until then, wait until all is done."""
        self.today = day
        set_simulated_now(self.clock_file, self.now())
        for late in (False, True):
            for key in sorted(k for k in self._sleepers if k[0] <= day and k[1] == late):
                self._wake(self._sleepers.pop(key))
            await self.settled()

    async def settled(self) -> None:
        while self._working:
            self._idle.clear()
            await self._idle.wait()
        if self.failures:
            raise self.failures[0]

    def cancel(self) -> None:
        """The simulated time is over: whoever still sleeps (a review half-way) stays as it is."""
        for task in self._tasks:
            task.cancel()

    def _wake(self, futures: list[asyncio.Future[None]]) -> None:
        # Counted as working from the moment they are woken, before they run: else the calendar could
        # see nobody working and move on before they start.
        for future in futures:
            if not future.done():
                self._working += 1
                future.set_result(None)

    async def _blocked(self, future: asyncio.Future[None]) -> None:
        self._working -= 1
        if self._working == 0:
            self._idle.set()
        await future

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._working -= 1
        if not task.cancelled() and task.exception() is not None:
            self.failures.append(task.exception())  # type: ignore[arg-type]
        if self._working == 0 or self.failures:
            self._idle.set()


def working_day(day: date) -> date:
    """Staff act on weekdays: `day`, or the Monday after it."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day
