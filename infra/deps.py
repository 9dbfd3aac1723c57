"""What a route reaches through its request, the same in every service, as FastAPI dependencies: the
runtime, its event store, the caller's context for the events a command records, the request's
correlation id and the service's today. A route names what it needs in its signature (`store: Store`,
`today: Today`, `context: CommandContext`) instead of taking the request to reach them."""

from datetime import date
from typing import Annotated

from fastapi import Depends, Request

from infra.auth import ROLES, Caller, require_roles
from infra.eventstore import Context, EventStore
from infra.service import Runtime

# Any role: the route's own require_roles checks which. Whichever of the two runs first verifies the
# token (or takes the caller the edge verified before reading the body); the other reuses that caller.
_VERIFIED = require_roles(*sorted(ROLES))


def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


def store(request: Request) -> EventStore:
    return runtime(request).store


def context(request: Request, caller: Caller) -> Context:
    """Who the events a command records are by, and the request they answer (its correlation id)."""
    return Context(actor=caller.actor, correlation_id=request.state.correlation_id)


def today(request: Request) -> date:
    """The service's today, by its clock (which tests and the demo move)."""
    return runtime(request).today()


# The dependencies are async though they await nothing: FastAPI runs a plain function dependency in a
# worker thread.


async def _runtime(request: Request) -> Runtime:
    return runtime(request)


async def _store(request: Request) -> EventStore:
    return store(request)


async def _context(request: Request, caller: Annotated[Caller, Depends(_VERIFIED)]) -> Context:
    return context(request, caller)


async def _correlation_id(request: Request) -> str:
    found: str = request.state.correlation_id
    return found


async def _today(request: Request) -> date:
    return today(request)


ServiceRuntime = Annotated[Runtime, Depends(_runtime)]
Store = Annotated[EventStore, Depends(_store)]
# Who the events a command records are by (the verified caller), and the request they answer.
CommandContext = Annotated[Context, Depends(_context)]
# The request's correlation id (the edge's, infra.http), recorded in what the request causes.
CorrelationId = Annotated[str, Depends(_correlation_id)]
Today = Annotated[date, Depends(_today)]
