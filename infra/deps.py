"""What a route reaches through its request, the same in every service, as FastAPI dependencies: the
runtime, its event store, the caller's context for the events a command records, the request's
correlation id and the service's today. A route names what it needs in its signature (`store: Store`,
`today: Today`, `context: CommandContext`) instead of taking the request to reach them.

Each is async though it awaits nothing: FastAPI runs a plain function dependency in a worker thread."""

from datetime import date
from typing import Annotated

from fastapi import Depends, Request

from infra.auth import ROLES, Caller, require_roles
from infra.eventstore import Context, EventStore
from infra.service import Runtime

# Any role: the route's own require_roles checks which. Whichever of the two runs first verifies the
# token (or takes the caller the edge verified before reading the body); the other reuses that caller.
_VERIFIED = require_roles(*sorted(ROLES))


async def runtime(request: Request) -> Runtime:
    found: Runtime = request.app.state.runtime
    return found


async def store(request: Request) -> EventStore:
    return (await runtime(request)).store


async def context(request: Request, caller: Annotated[Caller, Depends(_VERIFIED)]) -> Context:
    """Who the events a command records are by (the verified caller), and the request they answer (its
    correlation id)."""
    return Context(actor=caller.actor, correlation_id=request.state.correlation_id)


async def correlation_id(request: Request) -> str:
    """The request's correlation id (the edge's, infra.http), recorded in what the request causes."""
    found: str = request.state.correlation_id
    return found


async def today(request: Request) -> date:
    """The service's today, by its clock (which tests and the demo move)."""
    return (await runtime(request)).today()


ServiceRuntime = Annotated[Runtime, Depends(runtime)]
Store = Annotated[EventStore, Depends(store)]
CommandContext = Annotated[Context, Depends(context)]
CorrelationId = Annotated[str, Depends(correlation_id)]
Today = Annotated[date, Depends(today)]
