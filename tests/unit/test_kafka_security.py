"""infra.kafka's client security: what the environment asks for is what every client gets, and a
half-given configuration stops the process instead of connecting with less."""

import re
import ssl
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from faststream.security import SASLScram512

from infra import kafka
from infra.kafka import KafkaSecurity, KafkaSecurityError

PASSWORD = "correct horse battery staple"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "kafka_password"
    path.write_text(PASSWORD + "\n")  # as `echo` or an editor leaves it
    return path


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    """A CA bundle: the system's, if it has one; ssl only needs a valid PEM certificate."""
    found = ssl.get_default_verify_paths().cafile
    if not found or not Path(found).is_file():
        pytest.skip("no system CA bundle to load")
    path = tmp_path / "ca.pem"
    path.write_bytes(Path(found).read_bytes())
    return path


def sasl_env(password_file: Path, protocol: str = "SASL_PLAINTEXT") -> dict[str, str]:
    return {
        "LEDER_KAFKA_SECURITY_PROTOCOL": protocol,
        "LEDER_KAFKA_SASL_USERNAME": "leder-notification",
        "LEDER_KAFKA_SASL_PASSWORD_FILE": str(password_file),
    }


def test_plaintext_is_the_default_and_adds_nothing() -> None:
    security = KafkaSecurity.from_env({})
    assert security.protocol == "PLAINTEXT"
    assert kafka.security(security) is None
    assert kafka.client_options(security) == {}


def test_sasl_plaintext_gives_scram_sha_512_with_the_file_s_password(password_file: Path) -> None:
    security = KafkaSecurity.from_env(sasl_env(password_file))
    assert security.password == PASSWORD, "the file's trailing newline is not part of the password"
    assert PASSWORD not in repr(security), "the password would reach a log"
    options = kafka.client_options(security)
    assert options == {
        "security_protocol": "SASL_PLAINTEXT",
        "ssl_context": None,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "leder-notification",
        "sasl_plain_password": PASSWORD,
    }
    faststream = kafka.security(security)
    assert isinstance(faststream, SASLScram512) and not faststream.use_ssl


def test_sasl_ssl_checks_the_broker_certificate_against_the_ca_file(
    password_file: Path, ca_file: Path
) -> None:
    env = {**sasl_env(password_file, "SASL_SSL"), "LEDER_KAFKA_CA_FILE": str(ca_file)}
    options = kafka.client_options(KafkaSecurity.from_env(env))
    assert options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] >= 1, "the CA file was not loaded"


def test_sasl_ssl_without_a_ca_file_uses_the_system_s(password_file: Path) -> None:
    options = kafka.client_options(KafkaSecurity.from_env(sasl_env(password_file, "SASL_SSL")))
    assert options["security_protocol"] == "SASL_SSL"
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"LEDER_KAFKA_SECURITY_PROTOCOL": "SSL"}, "LEDER_KAFKA_SECURITY_PROTOCOL"),
        ({"LEDER_KAFKA_SASL_USERNAME": ""}, "LEDER_KAFKA_SASL_USERNAME"),
        ({"LEDER_KAFKA_SASL_PASSWORD_FILE": ""}, "LEDER_KAFKA_SASL_PASSWORD_FILE"),
        ({"LEDER_KAFKA_SASL_PASSWORD_FILE": "/nonexistent/kafka_password"}, "cannot be read"),
        ({"LEDER_KAFKA_CA_FILE": "/etc/hostname"}, "LEDER_KAFKA_CA_FILE"),  # TLS is not on
    ],
)
def test_a_half_given_sasl_configuration_is_refused(
    password_file: Path, change: dict[str, str], named: str
) -> None:
    with pytest.raises(KafkaSecurityError, match=named):
        KafkaSecurity.from_env({**sasl_env(password_file), **change})


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(KafkaSecurityError, match="empty"):
        KafkaSecurity.from_env(sasl_env(empty))


def test_credentials_with_plaintext_are_refused(password_file: Path) -> None:
    """A username given with no SASL protocol means the operator thinks the client authenticates."""
    env = sasl_env(password_file)
    del env["LEDER_KAFKA_SECURITY_PROTOCOL"]
    with pytest.raises(KafkaSecurityError, match="PLAINTEXT"):
        KafkaSecurity.from_env(env)


async def test_every_client_infra_kafka_makes_takes_the_environment_s_security(
    password_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The FastStream broker (consumers, DLQ publishing), the relay's producer and offsets reader,
    and the admin clients: none is made without the environment's principal."""
    for key, value in sasl_env(password_file).items():
        monkeypatch.setenv(key, value)
    expected = kafka.client_options()
    broker = kafka.broker("kafka:9092")
    connection = broker._connection_kwargs
    assert {key: connection[key] for key in expected} == expected
    producer = kafka.producer("kafka:9092")
    reader = kafka.offsets_reader("kafka:9092")
    admin = AIOKafkaAdminClient(bootstrap_servers="kafka:9092", **kafka.client_options())
    for client in (producer.client, reader._client, admin._client):
        assert client._security_protocol == "SASL_PLAINTEXT"
        assert client._sasl_mechanism == "SCRAM-SHA-512"
        assert client._sasl_plain_username == "leder-notification"
        assert client._sasl_plain_password == PASSWORD
    await producer.stop()
    await reader.stop()
    await admin.close()


def test_infra_kafka_makes_no_client_without_the_security_options() -> None:
    """Every aiokafka client constructed in infra/kafka.py passes client_options(), and the FastStream
    broker security(): a client added later without them would connect anonymously (and be refused by
    the compose file's broker, but work against the embedded one, so no other test would notice)."""
    source = Path(kafka.__file__).read_text()
    constructions = re.findall(
        r"(AIOKafka(?:Producer|Consumer|AdminClient)|KafkaBroker)\((.*?)\n    \)", source, re.S
    )
    inline = re.findall(r"= (AIOKafka(?:Producer|Consumer|AdminClient))\(([^\n]*)\)\n", source)
    made = [*constructions, *inline]
    assert len(made) >= 6, f"the parser found only {made}"
    for name, arguments in made:
        wanted = "security=security()" if name == "KafkaBroker" else "**client_options()"
        assert wanted in arguments, f"{name}({arguments.strip()}) lacks {wanted}"
