"""What every service's domain shares: the error that says a rule was broken.

Plain Python, no I/O, so any domain module may import it and stay pure. The HTTP edge answers every
DomainError the same way (infra.problems): its `status`, its `code` as the problem's code, its
`detail`, and whatever `problem_extras` adds (the fields refused, what is missing).
"""

from typing import Any


class DomainError(Exception):
    """A rule was broken; `code` names it (machine-readable), `status` is how the API answers it: 409
    for a thing in the wrong state (the default), 422 for a command no state could accept, 403, 410."""

    code = "rule_broken"
    status = 409

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def problem_extras(self) -> dict[str, Any]:
        """Members the problem details carry beyond status, code and detail; none by default."""
        return {}
