"""Checkpoints as C2SP signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint), the format other
transparency-log tools read: the origin, the tree size, the base64 root hash, a blank line, then
"— <key name> <base64(key hash || Ed25519 signature)>". The audit service appends one to a file
outside its database as it signs each checkpoint, so a rewrite of the database is caught by what was
published. Standard library and `cryptography` only, so a third party can check them."""

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DASH = "\u2014 "  # an em dash and a space begin each signature line
ED25519 = b"\x01"


def key_hash(name: str, public_key: bytes) -> bytes:
    """The 4 bytes that name an Ed25519 key in a signature line: SHA-256(name || 0x0A || 0x01 || key)."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def body(origin: str, tree_size: int, root_hash: bytes) -> str:
    """The checkpoint's text, what is signed (its final newline included)."""
    return f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"


def signature_line(name: str, text: str, key: Ed25519PrivateKey, public_key: bytes) -> str:
    """The line that signs `text` with the key called `name`."""
    signature = key.sign(text.encode())
    return f"{DASH}{name} {base64.b64encode(key_hash(name, public_key) + signature).decode()}\n"


def signed(origin: str, tree_size: int, root_hash: bytes, key: Ed25519PrivateKey, public_key: bytes) -> str:
    """The whole signed note, its key named as the log's origin (the usual choice)."""
    text = body(origin, tree_size, root_hash)
    return f"{text}\n{signature_line(origin, text, key, public_key)}"


@dataclass(frozen=True)
class Published:
    tree_size: int
    root_hash: bytes


class NotAVerifiedNote(ValueError):
    """A note that is malformed, of another log, or not signed by the pinned key."""


def open_note(note: str, origin: str, public_key: bytes) -> Published:
    """The checkpoint a note commits to, once its signature by the pinned key under the log's name
    (`origin`) has verified; NotAVerifiedNote otherwise."""
    text, blank, signatures = note.rpartition("\n\n")
    if not blank or not signatures.endswith("\n"):
        raise NotAVerifiedNote("not a signed note (no blank line before its signatures)")
    text += "\n"
    lines = text.split("\n")[:-1]
    if len(lines) < 3 or lines[0] != origin:
        raise NotAVerifiedNote(f"not a checkpoint of {origin}")
    expected = key_hash(origin, public_key)
    for line in signatures.removesuffix("\n").split("\n"):
        name, _, encoded = line.removeprefix(DASH).partition(" ")
        if not line.startswith(DASH) or name != origin:
            continue
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        if raw[:4] != expected:
            continue  # another key's signature: not ours to judge
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(raw[4:], text.encode())
        except InvalidSignature:
            raise NotAVerifiedNote("its signature by the pinned key does not verify") from None
        try:
            tree_size, root = int(lines[1]), base64.b64decode(lines[2], validate=True)
        except ValueError:
            raise NotAVerifiedNote("its tree size or root hash is malformed") from None
        return Published(tree_size, root)
    raise NotAVerifiedNote("it is not signed by the pinned key")


def split_notes(text: str) -> list[str]:
    """The notes of an append-only file of them: each ends after its signature lines, and the next
    begins with its origin line (never an em dash)."""
    notes: list[str] = []
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        if current and current[-1].startswith(DASH) and not line.startswith(DASH):
            notes.append("".join(current))
            current = []
        current.append(line)
    if current:
        notes.append("".join(current))
    return notes
