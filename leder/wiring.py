"""Every service the system runs, by name: the one place that loads a service's wiring (its
services/<name>/app.py definition). Only the composition root does this; infra/ and events/ know no
service, and a service knows no other."""

import importlib
from typing import cast

from events.topics import SERVICES
from infra.service import ServiceDefinition


def definition(service: str) -> ServiceDefinition:
    """The definition of one of the five services (events/topics.py SERVICES), imported only when asked
    for: `leder serve notification` loads the notification service and nothing else."""
    if service not in SERVICES:
        raise ValueError(f"no service is called {service!r}; the services are {', '.join(SERVICES)}")
    return cast(ServiceDefinition, importlib.import_module(f"services.{service}.app").definition)
