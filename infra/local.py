"""LEDER_HOME, the folder a machine's system lives in: what `leder up` wrote down there (the env file, the
audit log's key pair) for the other commands, and the services' own operator commands, to find.

It knows no service: the stack that writes these files is the composition root's (leder/stack.py)."""

import os
from pathlib import Path

# The file in LEDER_HOME that `leder up` writes its settings to (its database URL, its ports...).
LOCAL_ENV = "env"


def home() -> Path:
    return Path(os.environ.get("LEDER_HOME", ".leder")).resolve()


def audit_key_files(folder: Path) -> tuple[Path, Path]:
    """The audit log's Ed25519 key pair, outside any database: the private key (PEM, 0600) generated
    once, and its public key (PEM, readable by all) that verifiers are given."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = folder / "audit-signing-key.pem", folder / "audit-public-key.pem"
    if not private.exists():
        folder.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
    private.chmod(0o600)
    key = serialization.load_pem_private_key(private.read_bytes(), password=None)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def write_private(path: Path, text: str) -> None:
    """A file only its owner reads (0600), whatever the umask: LEDER_HOME's secrets, and the env file
    whose database URL carries the embedded PostgreSQL's password."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    temporary.replace(path)


def local_env() -> dict[str, str]:
    """What the last `leder up` wrote down, for the other commands (token, rebuild) to find it."""
    path = home() / LOCAL_ENV
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def env_or_local(name: str) -> str | None:
    return os.environ.get(name) or local_env().get(name)
