"""What a route reaches through its request, the same in every service: the runtime, its event
store, the caller's context for the events a command records, and the service's today."""

from datetime import date

from fastapi import Request

from infra.auth import Caller
from infra.eventstore import Context, EventStore
from infra.service import Runtime


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
