"""`leder`, the command people type: every command and argument says what it is for, bad input is one
line and exit 2 (never a traceback), and the hints `leder demo` prints work when pasted into a shell."""

import argparse
import collections
import io
import os
import shlex
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from types import SimpleNamespace
from uuid import uuid4

import pytest

from events.topics import SERVICES
from leder import cli
from leder.demo import run as demo_run

ROOT = Path(__file__).parents[2]


def leder(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leder.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]]:
    """Every parser under `parser`: (its words after `leder`, the parser, the help its parent gives it)."""
    found: list[tuple[tuple[str, ...], argparse.ArgumentParser, str | None]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                found.append(((*path, name), child, helps.get(name)))
                found += parsers(child, (*path, name))
    return found


def test_every_command_and_argument_has_help_text() -> None:
    missing = []
    for path, parser, help_text in parsers(cli.parser()):
        if not help_text:
            missing.append(" ".join(path))
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{' '.join(path)} {action.option_strings or action.dest}")
    assert not missing, missing


def help_of(*words: str) -> str:
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as exited:
        cli.main([*words, "--help"])
    assert exited.value.code == 0
    return out.getvalue()


def test_each_report_describes_its_own_options() -> None:
    options = {"kpis": "--month", "activity": "--from", "governance": "--quarter", "annual": "--year"}
    for kind, own in options.items():
        text = help_of("report", kind)
        assert own in text and "--html" in text and "--csv" in text, text
        others = [o for k, o in options.items() if k != kind]
        assert not [o for o in others if o in text], text
    assert "--to" in help_of("report", "activity")


def test_token_help_lists_the_roles_a_person_may_take() -> None:
    text = help_of("token")
    for role in (
        "partner_system",
        "lac",
        "reviewer",
        "senior_reviewer",
        "qa_panel",
        "governance",
        "ig_officer",
    ):
        assert role in text
    assert "system," not in text.replace("partner_system", "")  # the services' own role is not offered


def test_up_help_says_what_it_starts() -> None:
    text = " ".join(help_of("up").split())
    assert "five services" in text and "8000" in text
    assert "PostgreSQL" in text and "broker" in text and "LEDER_DATABASE_URL" in text


CASE = "6f1c2a94-3b7e-4d0a-9c55-1e2f3a4b5c6d"  # fixed: xdist workers collect the same ids
BAD_INPUT = [
    ("report", "kpis", "--month", "10/2026"),
    ("report", "kpis", "--month", "2026-13"),
    ("report", "kpis"),
    ("report", "activity", "--from", "2026-01-01"),
    ("report", "activity", "--from", "2026-02-01", "--to", "2026-01-01"),
    ("report", "activity", "--from", "1/2/2026", "--to", "2026-03-01"),
    ("report", "governance", "--quarter", "2026-Q5"),
    ("report", "annual", "--year", "26"),
    ("report",),
    ("audit", "replay", "not-a-uuid", "--reader", "ig.jo"),
    ("audit", "replay", CASE, "--as-of", "yesterday", "--reader", "ig.jo"),
    ("audit", "replay", CASE),  # who is reading?
    ("audit", "access", "--case", "not-a-uuid", "--reader", "ig.jo"),
    ("token", "--role", "king", "--sub", "alice"),
    ("token", "--role", "system", "--sub", "alice"),  # the services' own role, not a person's
    ("token", "--role", "partner_system", "--sub", "gp-system"),  # for which organisation?
    ("serve", "nothing"),
    ("nothing",),
]


@pytest.mark.parametrize("args", BAD_INPUT, ids=" ".join)
def test_bad_input_is_one_line_saying_what_is_wrong_and_exit_2(args: tuple[str, ...]) -> None:
    # Nowhere to connect: input that got past the checks would fail otherwise (exit 1).
    done = leder(*args, env={"LEDER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith("leder"), lines
    assert done.stdout == ""


def test_a_database_that_cannot_be_reached_is_one_line_and_exit_1() -> None:
    done = leder(
        "report",
        "kpis",
        "--month",
        "2026-10",
        env={"LEDER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"},
    )
    assert done.returncode == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


def test_the_hints_after_the_demo_work_pasted_into_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDER_HOME", str(tmp_path / "home with a space"))
    monkeypatch.chdir(ROOT)
    case_id = uuid4()
    urls = {s: f"http://127.0.0.1:{8001 + i}" for i, s in enumerate(SERVICES)}
    demo = SimpleNamespace(
        tally=collections.Counter(),
        cases={case_id: SimpleNamespace(case_id=case_id, returned=True)},
        world=SimpleNamespace(published=1, calls=1),
        mismatches=[],
    )
    out = io.StringIO()
    with redirect_stdout(out):
        demo_run._summary(demo, SimpleNamespace(urls=urls), {}, 1.0)  # type: ignore[arg-type]
    commands = [line[25:] for line in out.getvalue().split("Where to look")[1].splitlines()[1:]]
    curls = [c for c in commands if c.startswith("curl")]
    replays = [c for c in commands if " audit replay " in c]
    assert len(curls) == 4 and len(replays) == 1, commands
    # `curl` stands in for itself, saying what it was given; PATH holds no `leder` (as after a clone).
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LEDER_HOME": os.environ["LEDER_HOME"],
        # `leder token` signs with the session's people key (tests/conftest.py), as with `leder up`'s.
        "LEDER_TOKEN_SIGNING_KEY_FILE": os.environ["LEDER_TOKEN_SIGNING_KEY_FILE"],
    }
    for command in curls:
        script = f"curl() {{ printf '%s\\n' \"$@\"; }}\nset -e\n{command}\n"
        done = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0 and not done.stderr, (command, done.stderr)
        header, url = done.stdout.splitlines()[1:3]
        assert header.startswith("Authorization: Bearer ey") and url.startswith("http://127.0.0.1:80"), done
    [replay] = replays
    assert "--reader" in shlex.split(replay)
    # No database to read: past the command line's checks, it fails to connect (1), not 2 or 127.
    done = subprocess.run(
        ["bash", "-c", replay],
        cwd=ROOT,
        env={**env, "LEDER_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, (replay, done.stderr)
