"""The AsyncAPI and OpenAPI documents in docs/ match the code. Run `leder docs` and commit what it writes."""

from leder.docs import DOCS, documents, render


def test_the_asyncapi_and_openapi_documents_are_current() -> None:
    wanted = documents()
    on_disk = {str(p.relative_to(DOCS)): p.read_text() for p in DOCS.glob("*/*.json")}
    assert sorted(on_disk) == sorted(wanted), "docs/ is stale: run `leder docs`"
    for name, document in wanted.items():
        assert on_disk[name] == render(document), f"docs/{name} is stale: run `leder docs`"


def test_every_service_documents_the_topic_it_publishes() -> None:
    for service in ("notification", "allocation", "review", "governance", "audit"):
        channels = documents()[f"asyncapi/{service}.json"]["channels"]
        assert f"leder.{service}.events:publish" in channels
