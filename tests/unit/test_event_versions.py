"""Versions of published messages: a schema file stays published once its message has a newer version,
and the partner notification is upcast from an older version as events are."""

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field

from events import partner, registry
from events.governance import CaseClosed
from events.jsonschema import render, schemas, write_schemas
from events.partner import PARTNER_NOTIFICATION, InvalidNotification, parse_notification
from tests.support.notifications import notification


class CaseClosedV2(CaseClosed):
    """Version 2 of a published event, as if events/governance.py had it (so it is published)."""

    closed_by_panel: bool = False


CaseClosedV2.__module__ = "events.governance"


def test_adding_a_version_keeps_the_previous_versions_schema_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_schemas(tmp_path)
    v1 = tmp_path / "governance.CaseClosed.v1.json"
    published = v1.read_text()
    (tmp_path / "governance.NoLongerPublished.v1.json").write_text("{}\n")

    CaseClosedV2.event_type, CaseClosedV2.schema_version = "governance.CaseClosed", 2
    monkeypatch.setitem(registry._payloads, "governance.CaseClosed", CaseClosedV2)
    monkeypatch.setitem(registry._upcasters, ("governance.CaseClosed", 1), lambda d: d)
    write_schemas(tmp_path)

    v2 = json.loads((tmp_path / "governance.CaseClosed.v2.json").read_text())
    assert "closed_by_panel" in v2["properties"]
    assert v1.read_text() == published  # the older version's contract, byte for byte
    assert not (tmp_path / "governance.NoLongerPublished.v1.json").exists()
    # `schemas` (what the test of events/schemas/ compares with) lists both versions.
    wanted = schemas(tmp_path)
    assert {"governance.CaseClosed.v1.json", "governance.CaseClosed.v2.json"} <= set(wanted)
    assert render(wanted["governance.CaseClosed.v1.json"]) == published


class PartnerNotificationV2(partner.PartnerNotification):
    """Version 2: `organisations_involved` is called `organisations` on the wire."""

    schema_version: Literal[2]  # type: ignore[assignment]
    organisations_involved: list[partner.ShortText] = Field(
        default_factory=list, max_length=50, alias="organisations"
    )


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    lifted = {k: v for k, v in data.items() if k != "organisations_involved"}
    return {**lifted, "organisations": data.get("organisations_involved", [])}


@pytest.fixture
def partner_version_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partner, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(partner, "PartnerNotification", PartnerNotificationV2)
    monkeypatch.setitem(registry._upcasters, (PARTNER_NOTIFICATION, 1), _v1_to_v2)


def test_a_partner_notification_of_an_older_version_is_upcast_before_it_is_validated(
    partner_version_2: None,
) -> None:
    v1 = notification(organisations_involved=["Southmead Hospital", "Bristol GP"])
    v2 = {**_v1_to_v2(v1), "schema_version": 2}
    for sent in (v1, v2, json.dumps(v1), json.dumps(v2).encode()):
        parsed = parse_notification(sent)
        assert isinstance(parsed, PartnerNotificationV2)
        assert (parsed.schema_version, parsed.organisations_involved) == (
            2,
            ["Southmead Hospital", "Bristol GP"],
        )
    with pytest.raises(InvalidNotification) as refused:
        parse_notification({**v2, "schema_version": 3})
    assert [e.field for e in refused.value.errors] == ["schema_version"]


def test_the_current_partner_notification_is_read_as_it_was_before_versions() -> None:
    body = notification()
    assert body["schema_version"] == partner.SCHEMA_VERSION == 1
    assert parse_notification(body).schema_version == 1
    with pytest.raises(InvalidNotification) as refused:
        parse_notification({**body, "schema_version": 2})
    assert [e.field for e in refused.value.errors] == ["schema_version"]
