"""infra.dispatch: a run of items one handler takes together, the others one by one, all in order."""

from infra.dispatch import handler_for_type, in_runs


async def test_runs_of_one_handler_go_together_and_the_rest_one_by_one_in_order() -> None:
    seen: list[object] = []

    async def opened(item: str) -> None:
        raise AssertionError("a run is taken together")

    async def other(item: str) -> None:
        seen.append(item)

    async def together(run: list[str]) -> None:
        seen.append(tuple(run))

    items = [(opened, "o1"), (opened, "o2"), (other, "x"), (opened, "o3"), (other, "y"), (opened, "o4")]
    await in_runs(items, opened, together)
    assert seen == [("o1", "o2"), "x", ("o3",), "y", ("o4",)]
    seen.clear()
    await in_runs([], opened, together)
    assert seen == []


def test_a_later_version_is_handled_as_the_one_it_replaces_nearest_first() -> None:
    class V1: ...

    class V2(V1): ...

    class V3(V2): ...

    assert handler_for_type({V1: "v1"}, V3) == "v1"
    assert handler_for_type({V1: "v1", V2: "v2"}, V3) == "v2"
    assert handler_for_type({V2: "v2"}, V1) is None
