"""`leder up --instances N`: the names and ports of each service's instances, before anything starts
(tests/fault/test_two_instances.py runs them)."""

from pathlib import Path

import pytest

from events.topics import SERVICES
from infra.settings import SERVICE_PORTS
from leder import cli
from leder.stack import Stack


def test_one_instance_is_the_system_as_before(tmp_path: Path) -> None:
    stack = Stack(tmp_path, environ={}, web=True)
    needed = stack.needed_ports()
    assert {port: what for port, what in needed.items() if "service" in what} == {
        port: f"the {service} service" for service, port in SERVICE_PORTS.items()
    }
    assert [stack.instances_of(s) for s in SERVICES] == [[s] for s in SERVICES]


def test_the_second_instance_of_each_service_listens_ten_ports_above_the_first(tmp_path: Path) -> None:
    stack = Stack(tmp_path, environ={}, web=True, instances=2)
    needed = stack.needed_ports()
    for service, port in SERVICE_PORTS.items():
        assert stack.instances_of(service) == [service, f"{service}-2"]
        assert needed[port] == f"the {service} service"
        assert needed[port + 10] == f"the {service}-2 service"
    assert needed[8000] == "the web application"


def test_the_instances_follow_leder_base_port_and_given_ports_win(tmp_path: Path) -> None:
    stack = Stack(tmp_path, environ={"LEDER_BASE_PORT": "9001"}, ports={"audit-3": 9999}, instances=3)
    stack.needed_ports()
    assert stack.ports["notification-2"] == 9011 and stack.ports["notification-3"] == 9021
    assert stack.ports["audit-2"] == 9015 and stack.ports["audit-3"] == 9999


def test_no_instances_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        Stack(tmp_path, instances=0)


def test_up_takes_how_many_instances() -> None:
    assert cli.parser().parse_args(["up"]).instances == 1
    assert cli.parser().parse_args(["up", "--instances", "2"]).instances == 2


@pytest.mark.parametrize("count", ["0", "-1", "two", "1.5"])
def test_a_bad_count_is_one_line_and_exit_2(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parser().parse_args(["up", f"--instances={count}"])
    assert exited.value.code == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "--instances" in said[0], said
