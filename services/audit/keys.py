"""The audit log's keys and where its checkpoints are published, all outside its database: whoever
owns the database can rewrite it, so neither the key that signs nor the key that verifies may live
there. The private key is a file (LEDER_AUDIT_SIGNING_KEY_FILE); verification uses a public key given
to it (LEDER_AUDIT_PUBLIC_KEY_FILE, or `--public-key`), never one read from the log."""

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.audit import note

DEFAULT_ORIGIN = "leder-audit"


def _setting(name: str) -> str | None:
    """From the environment, or as `leder up` wrote it down (for `leder audit` run beside it)."""
    from infra.local import env_or_local

    return env_or_local(name)


class KeyMissing(Exception):
    """A key or the checkpoint log that the configuration does not name, or a file that is not one."""


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as failed:
        raise KeyMissing(f"cannot read the audit signing key {path}: {failed}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyMissing(f"{path} is not an Ed25519 private key")
    return key


def load_public(path: Path) -> bytes:
    """An Ed25519 public key: a PEM file, or the raw key's 64 hex digits as a checkpoint shows it."""
    try:
        raw = path.read_bytes()
    except OSError as failed:
        raise KeyMissing(f"cannot read the public key {path}: {failed.strerror or failed}") from None
    text = raw.decode(errors="replace").strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError):
        raise KeyMissing(f"{path} is not a public key (PEM, or 64 hex digits)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyMissing(f"{path} is not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def signing_key() -> Ed25519PrivateKey:
    path = _setting("LEDER_AUDIT_SIGNING_KEY_FILE")
    if not path:
        raise KeyMissing("no audit signing key: set LEDER_AUDIT_SIGNING_KEY_FILE (leder up makes one)")
    return load_private(Path(path))


def pinned_public_key() -> bytes:
    """The key the service verifies with: LEDER_AUDIT_PUBLIC_KEY_FILE, else its own signing key's
    (both configuration, neither the log)."""
    path = _setting("LEDER_AUDIT_PUBLIC_KEY_FILE")
    if path:
        return load_public(Path(path))
    return public_bytes(signing_key())


def checkpoint_log() -> Path | None:
    path = _setting("LEDER_AUDIT_CHECKPOINT_LOG")
    return Path(path) if path else None


def origin() -> str:
    """The log's name: each published checkpoint's first line, and its key's name."""
    return _setting("LEDER_AUDIT_LOG_ORIGIN") or DEFAULT_ORIGIN


def publish(path: Path, signed_note: str) -> None:
    """Append a signed checkpoint, on disk before the database records it: a checkpoint the database
    holds and the file does not is one its owner made."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, signed_note.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def published(path: Path, public_key: bytes, log_origin: str) -> tuple[list[note.Published], list[str]]:
    """The checkpoints published in the file that the pinned key signed, and what is wrong with any
    other note in it (a note the key did not sign is someone else's writing)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], []
    except (OSError, UnicodeDecodeError) as failed:
        return [], [f"cannot read the published checkpoints {path}: {failed}"]
    found, problems = [], []
    for number, one in enumerate(note.split_notes(text), 1):
        try:
            found.append(note.open_note(one, log_origin, public_key))
        except note.NotAVerifiedNote as wrong:
            problems.append(f"published checkpoint {number} in {path}: {wrong}")
    return found, problems
