"""docker-compose.yml: valid Compose, and consistent with the code it deploys.

No Docker engine is needed: the file is checked against the Compose Specification's JSON Schema, then
against events.topics and infra.settings, deploy/postgres-init.sh and .env.example.
"""

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from events.topics import SERVICES, all_topics
from infra.settings import SERVICE_PORTS

REPO_ROOT = Path(__file__).parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
POSTGRES_INIT = REPO_ROOT / "deploy" / "postgres-init.sh"
# The Compose Specification's JSON Schema (Apache-2.0, its licence beside it), kept here so the test
# runs in any checkout, not only beside the shared folder it was copied from.
COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"

TOPICS_JOB = "topics"
POSTGRES = "postgres"
KAFKA = "kafka"
REQUIRED_ENVIRONMENT = ("LEDER_KAFKA_BOOTSTRAP", "LEDER_JWT_SECRET", "LEDER_HTTP_HOST", "LEDER_HTTP_PORT")

# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error},
# ${NAME:+alt}, ${NAME+alt}, and bare $NAME. `$$` is a literal dollar, not a reference.
INTERPOLATION = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<modifier>:?[-?+])?(?P<argument>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
# `$$` first, so that a scan from the left never reads the second `$` of `$$` as a reference.
DOLLAR_OR_INTERPOLATION = re.compile(r"\$\$|" + INTERPOLATION.pattern)
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE_KEY|API_KEY", re.IGNORECASE)
SECRET_ASSIGNMENT = re.compile(
    r"(?P<name>[A-Za-z0-9_.-]*(?:password|passwd|secret|token)[A-Za-z0-9_.-]*)\s*[=:]\s*"
    r"(?P<value>[^\s,;&|)]+)",
    re.IGNORECASE,
)
URL_USERINFO = re.compile(r"://(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@")


# --- loading ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict), f"{COMPOSE_FILE} is not a YAML mapping"
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each LeDeR service (events.topics.SERVICES) -> the compose service that runs it."""
    found: dict[str, list[str]] = {}
    for compose_name, definition in services.items():
        words = command_words(definition.get("command"))
        if words[:2] == ["leder", "serve"] and len(words) == 3:
            found.setdefault(words[2], []).append(compose_name)
    return {name: services[found[name][0]] for name in SERVICES if len(found.get(name, [])) == 1}


@pytest.fixture(scope="module")
def env_example_names() -> list[str]:
    names = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if match:
            names.append(match.group(1))
    return names


def command_words(command: str | list[str] | None) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def command_text(definition: dict[str, Any]) -> str:
    parts = [definition.get("entrypoint"), definition.get("command")]
    return "\n".join(p if isinstance(p, str) else "\n".join(map(str, p)) for p in parts if p)


def environment(definition: dict[str, Any]) -> dict[str, str]:
    env = definition.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def strings(node: Any) -> Iterator[str]:
    """Every string in the loaded document, mapping keys included (comments are not in it)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def interpolations(text: str) -> Iterator[re.Match[str]]:
    """The variable references in a string, `$$` (a literal dollar) skipped."""
    return (m for m in DOLLAR_OR_INTERPOLATION.finditer(text) if m.group(0) != "$$")


def without_interpolation_arguments(text: str) -> str:
    """`${NAME:?error message}` -> `${NAME}`, so that messages and defaults do not read as values."""
    return DOLLAR_OR_INTERPOLATION.sub(
        lambda m: "${" + m.group("braced") + "}" if m.group("braced") else m.group(0), text
    )


def is_required_reference(value: str) -> bool:
    """Exactly one ${NAME}, ${NAME:?error} or ${NAME?error}: no literal and no default."""
    match = INTERPOLATION.fullmatch(value.strip())
    return bool(match and match.group("braced") and match.group("modifier") in (None, ":?", "?"))


def published_ports(definition: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs of the service's `ports`."""
    pairs = set()
    for entry in definition.get("ports", []):
        if isinstance(entry, dict):
            pairs.add((int(entry["published"]), int(entry["target"])))
            continue
        spec = str(entry).split("/", 1)[0]
        *host, container = spec.rsplit(":", 2)
        pairs.add((int(host[-1]) if host else int(container), int(container)))
    return pairs


def healthcheck_text(definition: dict[str, Any]) -> str:
    test = (definition.get("healthcheck") or {}).get("test") or []
    return test if isinstance(test, str) else " ".join(map(str, test))


# --- the Compose Specification ---------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The schema declares draft-07 (as "https://json-schema.org/draft-07/schema", a spelling jsonschema
    # does not look up), so name the validator rather than let jsonschema guess.
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.absolute_path)
    )
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


# --- services ---------------------------------------------------------------------------------------


def test_every_service_has_a_compose_service_running_leder_serve_its_name(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in SERVICES:
        running = [
            c for c, d in services.items() if command_words(d.get("command")) == ["leder", "serve", name]
        ]
        assert len(running) == 1, (
            f"expected one compose service running `leder serve {name}`, found {running}"
        )


def test_all_services_run_the_one_image_built_by_the_dockerfile(
    app_services: dict[str, dict[str, Any]],
) -> None:
    assert set(app_services) == set(SERVICES)
    images = {d.get("image") for d in app_services.values()}
    assert len(images) == 1 and None not in images, f"the services run different images: {images}"
    for name, definition in app_services.items():
        build = definition.get("build")
        context = build if isinstance(build, str) else (build or {}).get("context")
        dockerfile = "Dockerfile" if isinstance(build, str) else (build or {}).get("dockerfile", "Dockerfile")
        assert context is not None, f"{name} has no build"
        assert (REPO_ROOT / context / dockerfile).resolve() == (REPO_ROOT / "Dockerfile").resolve(), name


def test_every_service_environment_has_the_settings_the_code_reads(
    app_services: dict[str, dict[str, Any]],
) -> None:
    for name, definition in app_services.items():
        env = environment(definition)
        missing = [
            key for key in (*REQUIRED_ENVIRONMENT, f"LEDER_{name.upper()}_DATABASE_URL") if not env.get(key)
        ]
        assert not missing, f"{name} lacks {missing}"
        assert env["LEDER_HTTP_HOST"] == "0.0.0.0", f"{name} would listen on {env['LEDER_HTTP_HOST']} only"


def test_every_service_connects_to_its_own_database_as_its_own_user(
    app_services: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    postgres_env = environment(services[POSTGRES])
    for name, definition in app_services.items():
        env = environment(definition)
        own = f"LEDER_{name.upper()}_DATABASE_URL"
        others = [k for k in env if re.fullmatch(r"LEDER_\w+_DATABASE_URL", k) and k != own]
        assert not others, f"{name} is given other services' databases: {others}"
        url = urlsplit(without_interpolation_arguments(env[own]))
        assert url.scheme in ("postgresql", "postgres"), f"{name}: {url.scheme}"
        assert url.username == f"leder_{name}", f"{name} connects as {url.username}"
        assert url.path == f"/leder_{name}", f"{name} connects to {url.path}"
        assert url.hostname == POSTGRES, f"{name} connects to {url.hostname}, not the {POSTGRES} service"
        password = url.password or ""
        match = re.fullmatch(r"\$\{(\w+)\}", password)
        assert match, f"{name}'s database password is not a variable reference: keep it out of the file"
        # The same variable must reach postgres, where the init script sets the role's password from it.
        assert match.group(1) in postgres_env, (
            f"{POSTGRES} is not given {match.group(1)} for role leder_{name}"
        )


def test_postgres_init_script_creates_a_role_and_database_for_every_service(
    services: dict[str, dict[str, Any]],
) -> None:
    mounts = [
        str(v) if not isinstance(v, dict) else f"{v.get('source')}:{v.get('target')}"
        for v in services[POSTGRES].get("volumes", [])
    ]
    init_mounts = [m for m in mounts if m.split(":")[1].startswith("/docker-entrypoint-initdb.d/")]
    assert any((REPO_ROOT / m.split(":")[0]).resolve() == POSTGRES_INIT.resolve() for m in init_mounts), (
        f"{POSTGRES_INIT.relative_to(REPO_ROOT)} is not mounted into /docker-entrypoint-initdb.d: {mounts}"
    )
    script = POSTGRES_INIT.read_text()
    listed = re.search(r'^LEDER_SERVICES="([^"]*)"', script, re.MULTILINE)
    assert listed, "postgres-init.sh has no LEDER_SERVICES list"
    assert listed.group(1).split() == list(SERVICES)
    assert re.search(r"LEDER_\$\{\w+\^\^\}_DB_PASSWORD", script), (
        "the script reads no LEDER_<SERVICE>_DB_PASSWORD"
    )
    postgres_env = environment(services[POSTGRES])
    for name in SERVICES:
        assert f"LEDER_{name.upper()}_DB_PASSWORD" in postgres_env, f"{POSTGRES} lacks {name}'s password"


def test_each_service_port_matches_infra_settings_service_ports(
    app_services: dict[str, dict[str, Any]],
) -> None:
    for name, definition in app_services.items():
        port = SERVICE_PORTS[name]
        assert environment(definition)["LEDER_HTTP_PORT"] == str(port), name
        assert published_ports(definition) == {(port, port)}, (
            f"{name} publishes {published_ports(definition)}"
        )
        assert f"http://127.0.0.1:{port}/healthz" in healthcheck_text(definition), (
            f"{name}'s healthcheck does not ask its own port: {healthcheck_text(definition)}"
        )


def test_services_wait_for_healthy_postgres_and_completed_topics_job(
    app_services: dict[str, dict[str, Any]],
) -> None:
    for name, definition in app_services.items():
        depends_on = definition.get("depends_on")
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        assert depends_on.get(POSTGRES, {}).get("condition") == "service_healthy", name
        assert depends_on.get(TOPICS_JOB, {}).get("condition") == "service_completed_successfully", name


def test_services_restart_unless_stopped_and_have_healthchecks(
    app_services: dict[str, dict[str, Any]],
) -> None:
    for name, definition in app_services.items():
        assert definition.get("restart") == "unless-stopped", name
        assert "urllib" in healthcheck_text(definition), f"{name}: slim has no curl; check with urllib"


def test_kafka_and_postgres_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in (KAFKA, POSTGRES):
        healthcheck = services[name].get("healthcheck") or {}
        assert healthcheck.get("test") and not healthcheck.get("disable"), f"{name} has no healthcheck"


# --- Kafka and topics ------------------------------------------------------------------------------


def test_kafka_does_not_auto_create_topics(services: dict[str, dict[str, Any]]) -> None:
    assert environment(services[KAFKA]).get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") == "false"


def test_services_bootstrap_from_kafkas_advertised_listener(
    app_services: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    advertised = environment(services[KAFKA])["KAFKA_ADVERTISED_LISTENERS"]
    endpoints = {listener.split("://", 1)[1] for listener in advertised.split(",")}
    for name, definition in app_services.items():
        bootstrap = environment(definition)["LEDER_KAFKA_BOOTSTRAP"]
        assert set(bootstrap.split(",")) <= endpoints, f"{name} bootstraps from {bootstrap}, not {endpoints}"


def test_topics_job_creates_every_topic(services: dict[str, dict[str, Any]]) -> None:
    text = command_text(services[TOPICS_JOB])
    created = set(re.findall(r"(?<![\w.-])leder\.[A-Za-z0-9._-]*[A-Za-z0-9_-]", text))
    assert "--create" in text
    missing, unexpected = set(all_topics()) - created, created - set(all_topics())
    assert not missing, f"the topics job does not create {sorted(missing)}"
    assert not unexpected, f"the topics job names topics the code does not use: {sorted(unexpected)}"


def job_partitions(job: dict[str, Any]) -> str:
    """What the topics job passes to --partitions, as the compose file spells it: `${...}` directly, or
    through the job's environment (`$$LEDER_TOPIC_PARTITIONS`, or a shell variable set from it)."""
    text = command_text(job)
    arguments = re.findall(r'--partitions\s+"?(\$\{[^}]*\}|\$\$\{?\w+\}?|\S+)', text)
    assert len(set(arguments)) == 1, f"the topics job's --partitions arguments: {arguments}"
    argument = arguments[0].rstrip('"')
    if not argument.startswith("$$"):
        return argument
    variable = argument.strip("${}")
    if variable != "LEDER_TOPIC_PARTITIONS":
        assignment = re.search(rf'^\s*{variable}="?\$\$\{{?(\w+)', text, re.MULTILINE)
        assert assignment, f"the topics job never sets ${variable}"
        variable = assignment.group(1)
    assert variable == "LEDER_TOPIC_PARTITIONS", f"the topics job takes partitions from {variable}"
    value = environment(job).get(variable)
    assert value, f"the topics job is not given {variable}"
    return value


def test_topics_job_and_services_agree_on_partition_count(
    app_services: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    partitions = job_partitions(services[TOPICS_JOB])
    assert "LEDER_TOPIC_PARTITIONS" in partitions, (
        f"partition count is fixed at {partitions}, not configurable"
    )
    for name, definition in app_services.items():
        # The relay partitions by this count; if it differs from the topics', it recreates the topics.
        assert environment(definition).get("LEDER_TOPIC_PARTITIONS") == partitions, name


def test_topics_job_runs_once_after_kafka_is_healthy(services: dict[str, dict[str, Any]]) -> None:
    job = services[TOPICS_JOB]
    assert job.get("restart", "no") == "no"
    assert job.get("image") == services[KAFKA].get("image")
    assert (job.get("depends_on") or {}).get(KAFKA, {}).get("condition") == "service_healthy"


# --- variables and secrets -------------------------------------------------------------------------


def test_every_variable_the_compose_file_references_is_in_env_example(
    compose: dict[str, Any], env_example_names: list[str]
) -> None:
    referenced = {m.group("braced") or m.group("bare") for s in strings(compose) for m in interpolations(s)}
    assert referenced, "no ${VAR} references found: the parser is broken"
    missing = referenced - set(env_example_names)
    assert not missing, f".env.example does not list {sorted(missing)}"


def test_every_env_example_variable_is_used_and_documented(
    compose: dict[str, Any], env_example_names: list[str]
) -> None:
    referenced = {m.group("braced") or m.group("bare") for s in strings(compose) for m in interpolations(s)}
    assert len(env_example_names) == len(set(env_example_names)), "a variable is listed twice"
    unused = set(env_example_names) - referenced
    assert not unused, f".env.example lists variables the compose file never uses: {sorted(unused)}"
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"\s*[A-Za-z_]\w*\s*=", line):
            assert index > 0 and lines[index - 1].lstrip().startswith("#"), f"no comment above: {line}"


def test_no_secret_is_written_literally_in_the_compose_file(compose: dict[str, Any]) -> None:
    for definition in compose["services"].values():
        for key, value in environment(definition).items():
            if SECRET_NAME.search(key):
                assert is_required_reference(value), f"{key} must be a required ${{VAR}}, not {value!r}"
    for text in map(without_interpolation_arguments, strings(compose)):
        for match in URL_USERINFO.finditer(text):
            assert re.fullmatch(r"\$\{\w+\}", match.group("password")), (
                f"literal password for {match.group('user')} in {text!r}"
            )
        for match in SECRET_ASSIGNMENT.finditer(text):
            assert match.group("value").startswith("$"), f"literal secret for {match.group('name')}: {text!r}"


def test_secret_variables_are_required_never_defaulted(compose: dict[str, Any]) -> None:
    for text in strings(compose):
        for match in interpolations(text):
            name = match.group("braced") or match.group("bare")
            if SECRET_NAME.search(name):
                assert match.group("modifier") in (None, ":?", "?"), (
                    f"${{{name}}} has a default or alternative value: a secret in the file"
                )
