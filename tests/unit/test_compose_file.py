"""docker-compose.yml: valid Compose, and consistent with the code it deploys.

No Docker engine is needed: the file is checked against the Compose Specification's JSON Schema, then
against events.topics, infra.settings and services.web.settings, deploy/postgres-init.sh and
.env.example; and the image it runs (Dockerfile, .dockerignore, pyproject.toml's package data) is
checked to carry the web application's templates and static files. Kafka's security is checked in
deploy/kafka/server.properties (what the broker enforces) and by running deploy/kafka/access.sh (who
may do what) against stand-ins for Kafka's tools, whose calls are compared with what each service's
consumers (services/*/app.py) consume.
"""

import importlib
import json
import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from events.topics import SERVICES, all_topics, dlq, partner_topic, service_topic
from infra.kafka import KafkaSecurity, client_options
from infra.settings import SERVICE_PORTS
from infra.tokens import token_key_files
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
# Sets the Kafka principals' credentials and ACLs (deploy/kafka/access.sh).
ACCESS_JOB = "kafka-access"
KAFKA_JOBS = (TOPICS_JOB, ACCESS_JOB)
KAFKA_CONFIG = REPO_ROOT / "deploy" / "kafka" / "server.properties"
KAFKA_ACCESS = REPO_ROOT / "deploy" / "kafka" / "access.sh"
SERVICE_PY = REPO_ROOT / "infra" / "service.py"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Where the access job finds each partner's password file (partner-<ODS code>).
PARTNERS_MOUNT = "/run/leder/kafka-partners"
REQUIRED_ENVIRONMENT = (
    "LEDER_KAFKA_BOOTSTRAP",
    "LEDER_TOKEN_JWKS_FILE",
    "LEDER_SYSTEM_TOKEN_PUBLIC_KEY_FILE",
    "LEDER_EVENT_SIGNING_KEY_DIR",
    "LEDER_EVENT_PUBLIC_KEYS_FILE",
    "LEDER_HTTP_HOST",
    "LEDER_HTTP_PORT",
)
# The web application: `leder serve web`, a process like the services, with a database of its own
# (sessions) but no Kafka and no entry in infra.settings.SERVICE_PORTS.
WEB = "web"
PORTS = {**SERVICE_PORTS, WEB: WEB_PORT}
WEB_REQUIRED_ENVIRONMENT = ("LEDER_TOKEN_SIGNING_KEY_FILE", "LEDER_HTTP_HOST", "LEDER_WEB_DATABASE_URL")
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


def test_only_the_web_holds_the_token_signing_key_and_the_services_its_public_half(
    compose: dict[str, Any], app_services: dict[str, dict[str, Any]], web_app: dict[str, Any]
) -> None:
    """No service can mint a caller's token: the private key is mounted in the web application alone,
    and every service checks tokens with the public keys of that one issuer."""
    web_key = secret_targets(web_app)[
        environment(web_app)["LEDER_TOKEN_SIGNING_KEY_FILE"].removeprefix("/run/secrets/")
    ]
    for name, definition in compose["services"].items():
        if name != WEB:
            assert web_key not in secret_targets(definition).values(), f"{name} is given {web_key}"
            assert "LEDER_TOKEN_SIGNING_KEY_FILE" not in environment(definition), name
    jwks = {
        secret_targets(d)[environment(d)["LEDER_TOKEN_JWKS_FILE"].removeprefix("/run/secrets/")]
        for d in app_services.values()
    }
    assert len(jwks) == 1, f"the services trust different token keys: {jwks}"
    assert "LEDER_EVENT_SIGNING_KEY_DIR" not in environment(web_app), f"{WEB} publishes no events"


def test_each_service_is_given_its_own_event_signing_key_and_no_other(
    compose: dict[str, Any], app_services: dict[str, dict[str, Any]]
) -> None:
    for name, definition in app_services.items():
        folder = environment(definition)["LEDER_EVENT_SIGNING_KEY_DIR"]
        keys = {t: src for t, src in secret_targets(definition).items() if src.startswith("event_signing_")}
        assert keys == {f"{folder}/{name}.pem": f"event_signing_{name}"}, f"{name} is given {keys}"
        assert compose["secrets"][f"event_signing_{name}"]["file"].endswith(f"/{name}.pem")


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
    tmp_path: Path,
) -> None:
    """The web application's settings as it reads them, with .env copied from .env.example."""
    for key in list(os.environ):
        if key.startswith("LEDER_"):
            monkeypatch.delenv(key)
    for key, value in environment(web_app).items():
        monkeypatch.setenv(key, interpolate(value, env_example_values))
    # The secret's file as Compose mounts it: the key `leder token-keys` makes.
    signing_key, _ = token_key_files(tmp_path)
    monkeypatch.setenv("LEDER_TOKEN_SIGNING_KEY_FILE", str(signing_key))
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


@pytest.fixture(scope="module")
def kafka_config() -> dict[str, str]:
    """deploy/kafka/server.properties (key=value lines; no continuations are used)."""
    config = {}
    for line in KAFKA_CONFIG.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "!")):
            key, _, value = line.partition("=")
            assert key.strip() not in config, f"{key.strip()} is set twice"
            config[key.strip()] = value.strip()
    return config


def kafka_listeners(config: dict[str, str], key: str = "listeners") -> dict[str, tuple[str, int, str]]:
    """Listener name -> (host, port, security protocol), from `listeners` or `advertised.listeners`."""
    protocols = dict(pair.split(":", 1) for pair in config["listener.security.protocol.map"].split(","))
    found = {}
    for listener in config[key].split(","):
        name, address = listener.split("://", 1)
        host, _, port = address.rpartition(":")
        found[name] = (host, int(port), protocols[name])
    return found


def test_kafka_runs_with_the_deployed_server_properties(services: dict[str, dict[str, Any]]) -> None:
    kafka = services[KAFKA]
    mounts = [str(v) for v in kafka.get("volumes", [])]
    mounted = [m.split(":") for m in mounts if (REPO_ROOT / m.split(":")[0]).resolve() == KAFKA_CONFIG]
    assert len(mounted) == 1 and mounted[0][2:] == ["ro"], f"{KAFKA_CONFIG.name} is not mounted read-only"
    target = mounted[0][1]
    text = command_text(kafka)
    assert re.search(rf"kafka-storage\.sh format .*--config {re.escape(target)}", text.replace("\\\n", ""))
    assert re.search(rf"exec /opt/kafka/bin/kafka-server-start\.sh {re.escape(target)}\s*$", text.strip())
    assert not kafka.get("ports"), "Kafka is published on the host"
    assert not [k for k in environment(kafka) if k.startswith("KAFKA_")], (
        "KAFKA_* variables would configure a broker beside server.properties"
    )


def test_kafka_does_not_auto_create_topics(kafka_config: dict[str, str]) -> None:
    assert kafka_config["auto.create.topics.enable"] == "false"


def test_kafka_denies_what_no_acl_allows(kafka_config: dict[str, str]) -> None:
    assert kafka_config["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert kafka_config["allow.everyone.if.no.acl.found"] == "false"
    # ANONYMOUS is whoever connects over PLAINTEXT: only loopback listeners speak it (next test).
    assert kafka_config["super.users"] == "User:ANONYMOUS"


def test_only_sasl_scram_listeners_are_reachable_from_the_network(kafka_config: dict[str, str]) -> None:
    listeners = kafka_listeners(kafka_config)
    reachable = {name: found for name, found in listeners.items() if found[0] not in LOOPBACK}
    assert reachable, "no listener for the services"
    for name, (host, _, protocol) in listeners.items():
        if protocol in ("PLAINTEXT", "SSL"):
            assert host in LOOPBACK, (
                f"{name} ({protocol}, no authentication) listens on {host or 'every address'}"
            )
    for name, (_, _, protocol) in reachable.items():
        assert protocol in ("SASL_PLAINTEXT", "SASL_SSL"), f"{name} is reachable with {protocol}"
    assert kafka_config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    for name in reachable:
        mechanisms = kafka_config.get(
            f"listener.name.{name.lower()}.sasl.enabled.mechanisms", "SCRAM-SHA-512"
        )
        assert mechanisms == "SCRAM-SHA-512", f"{name} also takes {mechanisms}"
    # The broker's own traffic (to itself, to its controller) stays on loopback.
    assert listeners[kafka_config["inter.broker.listener.name"]][0] in LOOPBACK
    for name in kafka_config["controller.listener.names"].split(","):
        assert listeners[name][0] in LOOPBACK, f"the controller listener {name} is reachable"
    for voter in kafka_config["controller.quorum.voters"].split(","):
        assert voter.split("@", 1)[1].rpartition(":")[0] in LOOPBACK


def sasl_endpoints(kafka_config: dict[str, str]) -> set[str]:
    return {
        f"{host}:{port}"
        for host, port, protocol in kafka_listeners(kafka_config, "advertised.listeners").values()
        if protocol.startswith("SASL_")
    }


def loopback_endpoints(kafka_config: dict[str, str]) -> set[str]:
    """The broker's PLAINTEXT loopback listeners that take clients (not the KRaft controller's)."""
    controllers = kafka_config["controller.listener.names"].split(",")
    return {
        f"{host}:{port}"
        for name, (host, port, protocol) in kafka_listeners(kafka_config).items()
        if host in LOOPBACK and protocol == "PLAINTEXT" and name not in controllers
    }


def test_services_bootstrap_from_kafkas_advertised_sasl_listener(
    app_services: dict[str, dict[str, Any]], kafka_config: dict[str, str]
) -> None:
    endpoints = sasl_endpoints(kafka_config)
    assert endpoints and {e.rpartition(":")[0] for e in endpoints} == {KAFKA}, endpoints
    for name, definition in app_services.items():
        bootstrap = environment(definition)["LEDER_KAFKA_BOOTSTRAP"]
        assert set(bootstrap.split(",")) <= endpoints, f"{name} bootstraps from {bootstrap}, not {endpoints}"


def test_the_super_user_is_reached_only_from_inside_the_broker(
    services: dict[str, dict[str, Any]], kafka_config: dict[str, str]
) -> None:
    """The jobs administer Kafka over its loopback listener (ANONYMOUS, the super user), which only
    a container sharing the broker's network namespace reaches; nothing else shares it."""
    inside = loopback_endpoints(kafka_config)
    assert inside, "no loopback listener"
    sharing = {name for name, d in services.items() if d.get("network_mode") == f"service:{KAFKA}"}
    assert sharing == set(KAFKA_JOBS), f"in the broker's network namespace: {sorted(sharing)}"
    for job in KAFKA_JOBS:
        text = command_text(services[job]) + (KAFKA_ACCESS.read_text() if job == ACCESS_JOB else "")
        used = {
            *re.findall(r"--bootstrap-server\s+([^\s)]+)", text),
            *re.findall(r"^bootstrap=(\S+)", text, re.M),
        }
        used.discard('"$bootstrap"')
        assert used and used <= inside, f"{job} administers Kafka at {used}, not its loopback {inside}"
    assert any(e in healthcheck_text(services[KAFKA]) for e in inside), "the healthcheck needs a principal"


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
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                continue  # names the file a Compose secret is mounted at (checked below)
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


def test_every_secret_file_a_service_is_told_of_is_mounted(compose: dict[str, Any]) -> None:
    """A *_FILE variable naming /run/secrets/<name> is given a Compose secret mounted there."""
    for name, definition in compose["services"].items():
        mounted = secret_targets(definition)
        for key, value in environment(definition).items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                target = value.removeprefix("/run/secrets/")
                assert target in mounted, f"{name}: {key} names {value}, but no secret is mounted there"
                assert mounted[target] in compose.get("secrets", {}), f"{name}: no secret {mounted[target]}"


# --- Kafka principals and ACLs --------------------------------------------------------------------


def secret_targets(definition: dict[str, Any]) -> dict[str, str]:
    """Where each of a service's secrets is mounted (its name under /run/secrets) -> the secret."""
    targets = {}
    for entry in definition.get("secrets", []):
        if isinstance(entry, str):
            targets[entry] = entry
        else:
            targets[entry.get("target", entry["source"])] = entry["source"]
    return targets


def kafka_secret(service: str) -> str:
    return f"kafka_{service}_password"


def test_every_service_authenticates_to_kafka_as_its_own_principal(
    compose: dict[str, Any],
    app_services: dict[str, dict[str, Any]],
    env_example_values: dict[str, str],
    tmp_path: Path,
) -> None:
    """Each service's environment, as compose hands it over, makes infra.kafka's clients log in with
    SCRAM-SHA-512 as leder-<service>, with the password of its own secret and no other's."""
    for name, definition in app_services.items():
        env = {key: interpolate(value, env_example_values) for key, value in environment(definition).items()}
        assert env.get("LEDER_KAFKA_SECURITY_PROTOCOL") in ("SASL_PLAINTEXT", "SASL_SSL"), name
        assert env.get("LEDER_KAFKA_SASL_USERNAME") == f"leder-{name}", name
        password_path = env.get("LEDER_KAFKA_SASL_PASSWORD_FILE", "")
        targets = secret_targets(definition)
        assert targets.get(password_path.removeprefix("/run/secrets/")) == kafka_secret(name), (
            f"{name} reads its Kafka password from {password_path}, not its secret {kafka_secret(name)}"
        )
        others = {kafka_secret(s) for s in SERVICES if s != name} & set(targets.values())
        assert not others, f"{name} is given other services' Kafka passwords: {others}"
        declared = compose["secrets"][kafka_secret(name)]
        assert is_required_reference(declared["file"]), f"{kafka_secret(name)}: {declared}"
        # What infra.kafka makes of it, with the secret's file where compose mounts it.
        stand_in = tmp_path / f"{name}.password"
        stand_in.write_text("0" * 64 + "\n")
        security = KafkaSecurity.from_env({**env, "LEDER_KAFKA_SASL_PASSWORD_FILE": str(stand_in)})
        options = client_options(security)
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert options["sasl_plain_username"] == f"leder-{name}"
        assert options["security_protocol"] == env["LEDER_KAFKA_SECURITY_PROTOCOL"]


def test_web_has_no_kafka_access(compose: dict[str, Any], web_app: dict[str, Any]) -> None:
    assert not [k for k in environment(web_app) if k.startswith("LEDER_KAFKA")], "the web uses no Kafka"
    assert not [s for s in secret_targets(web_app).values() if s.startswith("kafka_")]


def test_access_job_sets_every_principal_before_the_services_start(
    services: dict[str, dict[str, Any]], app_services: dict[str, dict[str, Any]], compose: dict[str, Any]
) -> None:
    job = services[ACCESS_JOB]
    assert job.get("restart", "no") == "no"
    assert job.get("image") == services[KAFKA].get("image")
    depends_on = job.get("depends_on") or {}
    assert depends_on.get(KAFKA, {}).get("condition") == "service_healthy"
    assert depends_on.get(TOPICS_JOB, {}).get("condition") == "service_completed_successfully"
    for name, definition in app_services.items():
        assert (definition.get("depends_on") or {}).get(ACCESS_JOB, {}).get("condition") == (
            "service_completed_successfully"
        ), f"{name} could start before its principal exists"
    mounts = [without_interpolation_arguments(str(v)).split(":") for v in job.get("volumes", [])]
    script = [m for m in mounts if (REPO_ROOT / m[0]).resolve() == KAFKA_ACCESS]
    assert len(script) == 1 and script[0][2:] == ["ro"]
    assert command_words(job.get("entrypoint")) == ["/bin/bash", script[0][1]]
    partners = [m for m in mounts if m[1:2] == [PARTNERS_MOUNT]]
    assert len(partners) == 1 and is_required_reference(partners[0][0]) and partners[0][2:] == ["ro"]
    # The same secrets the services read their passwords from, under their own names.
    assert secret_targets(job) == {kafka_secret(s): kafka_secret(s) for s in SERVICES}


# Stand-ins for Kafka's command-line tools: each call is appended to a log (arguments separated by
# \x1f, calls by \x1e); `kafka-configs.sh --describe --entity-type users` prints the users in
# $FAKE_KAFKA_USERS as Kafka 3.9 does.
FAKE_TOOL = r"""#!/bin/bash
printf '%s\x1f' "${0##*/}" "$@" >> "$FAKE_KAFKA_LOG"
printf '\x1e' >> "$FAKE_KAFKA_LOG"
if [[ " $* " == *" --describe "* && " $* " == *" users "* ]]; then
  for user in $FAKE_KAFKA_USERS; do
    echo "SCRAM credential configs for user-principal '$user' are SCRAM-SHA-512=iterations=8192"
  done
fi
"""


def run_access_script(
    tmp_path: Path,
    partners: dict[str, str],
    existing_users: str = "",
    passwords: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    tools = tmp_path / "bin"
    tools.mkdir(exist_ok=True)
    for tool in ("kafka-configs.sh", "kafka-acls.sh"):
        (tools / tool).write_text(FAKE_TOOL)
        (tools / tool).chmod(0o755)
    secrets, partner_dir = tmp_path / "secrets", tmp_path / "partners"
    secrets.mkdir(exist_ok=True)
    partner_dir.mkdir(exist_ok=True)
    for service in SERVICES:
        password = (passwords or {}).get(service, f"{service}-password-".ljust(40, "x"))
        (secrets / kafka_secret(service)).write_text(password + "\n")
    for principal, password in partners.items():
        (partner_dir / principal).write_text(password + "\n")
    log = tmp_path / "calls.jsonl"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", str(KAFKA_ACCESS)],
        env={
            "PATH": os.environ["PATH"],
            "KAFKA_BIN": str(tools),
            "LEDER_SECRETS_DIR": str(secrets),
            "LEDER_KAFKA_PARTNERS_DIR": str(partner_dir),
            "FAKE_KAFKA_LOG": str(log),
            "FAKE_KAFKA_USERS": existing_users,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    records = log.read_text().split("\x1e")[:-1] if log.exists() else []
    calls = [record.split("\x1f")[:-1] for record in records]
    return result, calls


def option_values(arguments: list[str], option: str) -> list[str]:
    return [arguments[i + 1] for i, word in enumerate(arguments[:-1]) if word == option]


def acl_grants(calls: list[list[str]], action: str = "--add") -> set[tuple[str, str, str, str]]:
    """(principal, operation, resource type, resource name) for each ACL the calls add (or remove)."""
    grants = set()
    for tool, *arguments in calls:
        if tool != "kafka-acls.sh" or action not in arguments:
            continue
        assert option_values(arguments, "--bootstrap-server"), "an ACL call without its broker"
        # Only literal resources, only allows, only topics and groups, from any host.
        forbidden = {
            "--deny-principal",
            "--cluster",
            "--transactional-id",
            "--resource-pattern-type",
            "--allow-host",
            "--producer",
            "--consumer",
            "--idempotent",
            "--delegation-token",
        }
        assert not forbidden & set(arguments), f"unexpected ACL options: {arguments}"
        principals = option_values(arguments, "--allow-principal")
        operations = option_values(arguments, "--operation")
        resources = [("topic", t) for t in option_values(arguments, "--topic")]
        resources += [("group", g) for g in option_values(arguments, "--group")]
        assert len(principals) == 1 and operations and resources, f"an ACL call grants nothing: {arguments}"
        grants |= {(principals[0], op, kind, name) for op in operations for kind, name in resources}
    return grants


def scram_credentials(calls: list[list[str]]) -> dict[str, str]:
    """Principal -> the password its SCRAM-SHA-512 credential was set with."""
    set_ = {}
    for tool, *arguments in calls:
        if tool == "kafka-configs.sh" and "--add-config" in arguments:
            assert option_values(arguments, "--entity-type") == ["users"]
            (config,) = option_values(arguments, "--add-config")
            match = re.fullmatch(r"SCRAM-SHA-512=\[iterations=(\d+),password=([^\],]+)\]", config)
            assert match and int(match.group(1)) >= 4096, config
            set_[option_values(arguments, "--entity-name")[0]] = match.group(2)
    return set_


def needed_acls() -> set[tuple[str, str, str, str]]:
    """What each service needs, from its code: WRITE its own topic; for each consumer, READ the topic
    and the consumer's group, and WRITE the topic's DLQ (where a DLQ topic exists: the partner DLQ's
    own consumer has none)."""
    group = 'group_id=f"{settings.topic_prefix}leder.{definition.name}.{consumer.name}"'
    assert group in SERVICE_PY.read_text(), "infra/service.py names consumer groups otherwise: update this"
    needs = set()
    for name in SERVICES:
        definition = importlib.import_module(f"services.{name}.app").definition
        runtime = MagicMock()
        runtime.settings.topic_prefix = ""
        principal = f"User:leder-{name}"
        needs.add((principal, "Write", "topic", service_topic(name)))
        consumers = list(definition.consumers(runtime))
        assert consumers or name == "audit", f"{name} consumes nothing?"
        for consumer in consumers:
            needs.add((principal, "Read", "topic", consumer.topic))
            needs.add((principal, "Read", "group", f"leder.{name}.{consumer.name}"))
            if dlq(consumer.topic) in all_topics():
                needs.add((principal, "Write", "topic", dlq(consumer.topic)))
    return needs


def test_each_service_principal_is_granted_exactly_what_its_consumers_need(tmp_path: Path) -> None:
    result, calls = run_access_script(tmp_path, partners={})
    assert result.returncode == 0, result.stderr
    granted = acl_grants(calls)
    needed = needed_acls()
    assert needed, "no needs derived: the consumer lookup is broken"
    assert ("User:leder-notification", "Read", "topic", partner_topic()) in needed
    missing, extra = needed - granted, granted - needed
    assert not missing, f"the services would be refused: {sorted(missing)}"
    assert not extra, f"granted beyond what the code needs: {sorted(extra)}"
    # No service may write another's topic: the one check the signed events rest on, said outright.
    for principal, operation, _, topic in granted:
        if operation == "Write" and topic.endswith(".events"):
            assert topic == service_topic(principal.removeprefix("User:leder-")), (principal, topic)
    assert scram_credentials(calls) == {f"leder-{s}": f"{s}-password-".ljust(40, "x") for s in SERVICES}, (
        "each service's credential is set from its own secret"
    )


def test_partners_may_write_the_partner_topic_only(tmp_path: Path) -> None:
    partners = {"partner-RX1": "a" * 64, "partner-R0A": "b" * 64}
    result, calls = run_access_script(tmp_path, partners=partners)
    assert result.returncode == 0, result.stderr
    partner_grants = {g for g in acl_grants(calls) if g[0].startswith("User:partner-")}
    assert partner_grants == {(f"User:{p}", "Write", "topic", partner_topic()) for p in partners}
    credentials = scram_credentials(calls)
    assert {p: credentials[p] for p in partners} == partners
    assert set(credentials) == {*partners, *(f"leder-{s}" for s in SERVICES)}, "an unexpected principal"
    assert not acl_grants(calls, "--remove"), "nothing to revoke"


def test_a_partner_whose_file_is_gone_loses_its_credential_and_acl(tmp_path: Path) -> None:
    result, calls = run_access_script(
        tmp_path, partners={"partner-RX1": "a" * 64}, existing_users="leder-audit partner-RX1 partner-OLD"
    )
    assert result.returncode == 0, result.stderr
    deleted = [
        option_values(arguments, "--entity-name")[0]
        for tool, *arguments in calls
        if tool == "kafka-configs.sh" and "--delete-config" in arguments
    ]
    assert deleted == ["partner-OLD"]
    assert acl_grants(calls, "--remove") == {("User:partner-OLD", "Write", "topic", partner_topic())}


@pytest.mark.parametrize(
    ("partners", "passwords", "complaint"),
    [
        ({}, {"review": "short"}, "at least 32"),
        ({}, {"review": "x" * 40 + ",password=other"}, "at least 32"),  # would smuggle a config
        ({"partner-RX1": "short"}, {}, "at least 32"),
        ({"partner-RX 1": "a" * 64}, {}, "partner-<ODS code>"),
    ],
)
def test_access_script_refuses_a_weak_password_or_a_bad_partner_name(
    tmp_path: Path, partners: dict[str, str], passwords: dict[str, str], complaint: str
) -> None:
    result, _ = run_access_script(tmp_path, partners=partners, passwords=passwords)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr
