"""docker-compose.yml: valid Compose, and consistent with the code it deploys.

No Docker engine is needed: the file is checked against the Compose Specification's JSON Schema, then
against events.topics, infra.settings and services.web.settings, deploy/postgres-init.sh and
.env.example; and the image it runs (Dockerfile, .dockerignore, pyproject.toml's package data) is
checked to carry the web application's templates and static files.
"""

import json
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from events.topics import SERVICES, all_topics
from infra.settings import SERVICE_PORTS
from services.web.settings import WEB_PORT, OidcSettings, WebSettings

REPO_ROOT = Path(__file__).parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
POSTGRES_INIT = REPO_ROOT / "deploy" / "postgres-init.sh"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"
WEB_PACKAGE = REPO_ROOT / "services" / "web"
# The Compose Specification's JSON Schema (Apache-2.0, its licence beside it), kept here so the test
# runs in any checkout, not only beside the shared folder it was copied from.
COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"

TOPICS_JOB = "topics"
POSTGRES = "postgres"
KAFKA = "kafka"
REQUIRED_ENVIRONMENT = ("LEDER_KAFKA_BOOTSTRAP", "LEDER_JWT_SECRET", "LEDER_HTTP_HOST", "LEDER_HTTP_PORT")
# The web application: `leder serve web`, a process like the services, with a database of its own
# (sessions) but no Kafka and no entry in infra.settings.SERVICE_PORTS.
WEB = "web"
PORTS = {**SERVICE_PORTS, WEB: WEB_PORT}
WEB_REQUIRED_ENVIRONMENT = ("LEDER_JWT_SECRET", "LEDER_HTTP_HOST", "LEDER_WEB_DATABASE_URL")
# Who the web application is and who may sign in: required, so that it never starts half-configured.
WEB_REQUIRED_VARIABLES = (
    "LEDER_WEB_PUBLIC_URL",
    "LEDER_OIDC_ISSUER",
    "LEDER_OIDC_CLIENT_ID",
    "LEDER_OIDC_CLIENT_SECRET",
)
# The page that lets anyone sign in as anyone (`leder up` only): never in production.
DEV_SIGN_IN = "LEDER_WEB_DEV_SIGNIN"

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
def web_app(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The compose service that runs the web application (`leder serve web`)."""
    return services[compose_names_running(services, WEB)[0]]


@pytest.fixture(scope="module")
def leder_processes(
    app_services: dict[str, dict[str, Any]], web_app: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Everything `leder serve` runs: the five services, then the web application."""
    return {**app_services, WEB: web_app}


@pytest.fixture(scope="module")
def env_example_values() -> dict[str, str]:
    """.env.example as `cp .env.example .env` would hand it to compose (unquoted values only)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2).strip()
    return values


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


def compose_names_running(services: dict[str, dict[str, Any]], name: str) -> list[str]:
    """The compose services whose command is `leder serve <name>`."""
    return [c for c, d in services.items() if command_words(d.get("command")) == ["leder", "serve", name]]


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


def interpolate(text: str, variables: dict[str, str]) -> str:
    """What compose makes of a value, given the variables of .env."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        modifier, argument = match.group("modifier"), match.group("argument") or ""
        value = variables.get(name)
        present = value is not None and (value != "" or not (modifier or "").startswith(":"))
        if modifier in ("?", ":?"):
            assert present, f"compose would refuse to start: {argument}"
        if modifier in ("-", ":-") and not present:
            return argument
        if modifier in ("+", ":+"):
            return argument if present else ""
        return value or ""

    return DOLLAR_OR_INTERPOLATION.sub(substitute, text)


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
    for name in (*SERVICES, WEB):
        running = compose_names_running(services, name)
        assert len(running) == 1, (
            f"expected one compose service running `leder serve {name}`, found {running}"
        )


def test_all_services_run_the_one_image_built_by_the_dockerfile(
    app_services: dict[str, dict[str, Any]], leder_processes: dict[str, dict[str, Any]]
) -> None:
    assert set(app_services) == set(SERVICES)
    assert set(leder_processes) == {*SERVICES, WEB}
    images = {d.get("image") for d in leder_processes.values()}
    assert len(images) == 1 and None not in images, f"the services run different images: {images}"
    for name, definition in leder_processes.items():
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


def test_web_environment_has_the_settings_the_code_reads(web_app: dict[str, Any]) -> None:
    env = environment(web_app)
    missing = [key for key in WEB_REQUIRED_ENVIRONMENT if not env.get(key)]
    assert not missing, f"{WEB} lacks {missing}"
    assert env.get("LEDER_WEB_PORT") or env.get("LEDER_HTTP_PORT"), f"{WEB} is given no port"
    assert env["LEDER_HTTP_HOST"] == "0.0.0.0", f"{WEB} would listen on {env['LEDER_HTTP_HOST']} only"


def test_web_signs_tokens_with_the_secret_the_services_check(
    app_services: dict[str, dict[str, Any]], web_app: dict[str, Any]
) -> None:
    web_secret = without_interpolation_arguments(environment(web_app)["LEDER_JWT_SECRET"])
    for name, definition in app_services.items():
        secret = without_interpolation_arguments(environment(definition)["LEDER_JWT_SECRET"])
        assert secret == web_secret, f"{WEB} signs with {web_secret}, {name} checks with {secret}"


def test_every_service_connects_to_its_own_database_as_its_own_user(
    leder_processes: dict[str, dict[str, Any]], services: dict[str, dict[str, Any]]
) -> None:
    postgres_env = environment(services[POSTGRES])
    for name, definition in leder_processes.items():
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
    assert listed.group(1).split() == [*SERVICES, WEB]
    assert re.search(r"LEDER_\$\{\w+\^\^\}_DB_PASSWORD", script), (
        "the script reads no LEDER_<SERVICE>_DB_PASSWORD"
    )
    postgres_env = environment(services[POSTGRES])
    for name in (*SERVICES, WEB):
        assert f"LEDER_{name.upper()}_DB_PASSWORD" in postgres_env, f"{POSTGRES} lacks {name}'s password"


def test_each_service_port_matches_infra_settings_service_ports(
    leder_processes: dict[str, dict[str, Any]],
) -> None:
    for name, definition in leder_processes.items():
        port = PORTS[name]
        env = environment(definition)
        if name == WEB:
            # services.web.settings reads LEDER_WEB_PORT first, then LEDER_HTTP_PORT.
            assert env.get("LEDER_WEB_PORT", env.get("LEDER_HTTP_PORT")) == str(port), name
        else:
            assert env["LEDER_HTTP_PORT"] == str(port), name
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


def test_web_waits_for_healthy_postgres_and_the_five_services(
    services: dict[str, dict[str, Any]], web_app: dict[str, Any]
) -> None:
    depends_on = web_app.get("depends_on")
    assert isinstance(depends_on, dict), f"{WEB}: depends_on needs conditions"
    waited_for = [POSTGRES, *(compose_names_running(services, name)[0] for name in SERVICES)]
    for dependency in waited_for:
        assert depends_on.get(dependency, {}).get("condition") == "service_healthy", (
            f"{WEB} does not wait for {dependency} to be healthy"
        )


def test_services_restart_unless_stopped_and_have_healthchecks(
    leder_processes: dict[str, dict[str, Any]],
) -> None:
    for name, definition in leder_processes.items():
        assert definition.get("restart") == "unless-stopped", name
        assert "urllib" in healthcheck_text(definition), f"{name}: slim has no curl; check with urllib"


def test_kafka_and_postgres_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in (KAFKA, POSTGRES):
        healthcheck = services[name].get("healthcheck") or {}
        assert healthcheck.get("test") and not healthcheck.get("disable"), f"{name} has no healthcheck"


# --- the web application --------------------------------------------------------------------------


def test_web_settings_read_from_the_compose_environment(
    services: dict[str, dict[str, Any]],
    web_app: dict[str, Any],
    env_example_values: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The web application's settings as it reads them, with .env copied from .env.example."""
    for key in list(os.environ):
        if key.startswith("LEDER_"):
            monkeypatch.delenv(key)
    for key, value in environment(web_app).items():
        monkeypatch.setenv(key, interpolate(value, env_example_values))
    settings = WebSettings.from_env()
    for name in SERVICES:
        compose_name = compose_names_running(services, name)[0]
        assert settings.service_urls[name] == f"http://{compose_name}:{SERVICE_PORTS[name]}", (
            f"{WEB} calls {name} at {settings.service_urls[name]}"
        )
    assert settings.http_port == WEB_PORT
    assert urlsplit(settings.database_url).path == "/leder_web"
    assert not settings.dev_sign_in
    assert settings.oidc is not None, f"{WEB} has no identity provider: nobody could sign in"
    assert settings.public_url.startswith("https://"), f"not the address behind TLS: {settings.public_url}"
    assert settings.secure_cookies


def test_web_public_url_and_identity_provider_are_required(web_app: dict[str, Any]) -> None:
    env = environment(web_app)
    for key in WEB_REQUIRED_VARIABLES:
        assert is_required_reference(env.get(key, "")), f"{WEB}: {key} must be a required ${{VAR}}"


def test_web_optional_claims_default_to_what_the_code_defaults_to(web_app: dict[str, Any]) -> None:
    env = environment(web_app)
    for field in ("roles_claim", "user_claim", "name_claim", "organisation_claim", "scopes"):
        key = f"LEDER_OIDC_{field.upper()}"
        match = INTERPOLATION.fullmatch(env.get(key, ""))
        assert match and match.group("braced") == key and match.group("modifier") == ":-", (
            f"{WEB}: {key} should be ${{{key}:-default}}, not {env.get(key)!r}"
        )
        assert match.group("argument") == getattr(OidcSettings, field), (
            f"{key} defaults to {match.group('argument')!r}, the code to {getattr(OidcSettings, field)!r}"
        )


def test_dev_sign_in_is_never_in_the_compose_file_or_env_example(env_example_names: list[str]) -> None:
    assert DEV_SIGN_IN not in COMPOSE_FILE.read_text(), f"{DEV_SIGN_IN} lets anyone sign in as anyone"
    assert DEV_SIGN_IN not in env_example_names


# --- the image -------------------------------------------------------------------------------------


def web_assets() -> list[str]:
    """The web application's templates and static files, relative to services/web."""
    return sorted(
        str(path.relative_to(WEB_PACKAGE))
        for folder in ("templates", "static")
        for path in (WEB_PACKAGE / folder).rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.parts)
    )


def test_package_data_includes_the_web_templates_and_static_files() -> None:
    package_data = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data.get("services.web", [])
    included = {
        str(Path(found).relative_to(WEB_PACKAGE))
        for pattern in patterns
        for found in WEB_PACKAGE.glob(pattern)
        if found.is_file()
    }
    assets = web_assets()
    assert "static/nhsuk/nhsuk-frontend.min.css" in assets and any(a.endswith(".html") for a in assets)
    missing = sorted(set(assets) - included)
    assert not missing, f"a non-editable install (the image) would lack {missing}"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps a path (or a folder above it) out of the build context."""
    prefixes = ["/".join(path.split("/")[: i + 1]) for i in range(path.count("/") + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = re.sub(r"\\\[(.*?)\\\]", lambda m: "[" + m.group(1) + "]", regex)
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_the_image_carries_the_web_templates_and_static_files() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert dockerignored("services/web/__pycache__/app.cpython-311.pyc", patterns), "the matcher is broken"
    ignored = [a for a in web_assets() if dockerignored(f"services/web/{a}", patterns)]
    assert not ignored, f".dockerignore keeps {ignored} out of the image"
    copies = re.findall(r"^COPY\s+(?!--from)(.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    sources = {word.rstrip("/") for copy in copies for word in copy.split()[:-1]}
    assert {"pyproject.toml", "services"} <= sources, f"the Dockerfile copies only {sorted(sources)}"
    assert re.search(r"^RUN pip install \.$", DOCKERFILE.read_text(), re.MULTILINE), "no non-editable install"


def test_dockerfile_exposes_every_port(leder_processes: dict[str, dict[str, Any]]) -> None:
    exposed = {
        int(port.split("/")[0])
        for line in re.findall(r"^EXPOSE\s+(.+)$", DOCKERFILE.read_text(), re.MULTILINE)
        for port in line.split()
    }
    assert exposed == {PORTS[name] for name in leder_processes}, f"the Dockerfile exposes {sorted(exposed)}"


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
