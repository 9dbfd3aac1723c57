"""The shared HTTP edge answers any service's DomainError as problem details: its status, its code
(and the title made of it), its detail and its extras, as the per-service wrappers did."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from infra.domain import DomainError
from infra.problems import PROBLEM_JSON, install_problem_handlers


class WrongState(DomainError):
    code = "case_not_open"


class FieldsRefused(DomainError):
    code = "date_in_future"
    status = 422

    def problem_extras(self) -> dict[str, Any]:
        return {"errors": [{"field": "completed_on", "type": self.code, "message": self.detail}]}


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/state")
    async def state() -> None:
        raise WrongState("case 1 is not open")

    @app.post("/fields")
    def fields() -> None:  # a sync route: the error crosses the thread pool and still answers here
        raise FieldsRefused("completed_on is in the future")

    return app


def test_a_rule_broken_is_a_problem_with_its_status_and_code() -> None:
    answer = TestClient(_app()).post("/state")
    assert answer.status_code == 409
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json() == {
        "type": "https://leder.example.nhs.uk/problems/case_not_open",
        "title": "Case not open",
        "status": 409,
        "code": "case_not_open",
        "detail": "case 1 is not open",
        "instance": "/state",
    }


def test_a_refusal_carries_its_extras() -> None:
    answer = TestClient(_app()).post("/fields")
    assert answer.status_code == 422
    body = answer.json()
    assert (body["code"], body["title"]) == ("date_in_future", "Date in future")
    assert body["errors"] == [
        {"field": "completed_on", "type": "date_in_future", "message": "completed_on is in the future"}
    ]
