"""Published checkpoints are C2SP signed notes that other transparency-log tools read: the key hash and
signature line are those of the Go reference implementation (golang.org/x/mod/sumdb/note's own test
vector), and a note verifies only with the pinned key, unchanged."""

import base64
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra.local import audit_key_files
from services.audit import keys, note

# golang.org/x/mod/sumdb/note's test key: PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALV...
SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIGNATURE = "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="


def test_the_key_hash_and_signature_line_are_the_reference_implementations() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    public = keys.public_bytes(key)
    assert base64.b64encode(b"\x01" + public).decode() == "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    assert note.key_hash("PeterNeumann", public).hex() == "c74f20a3"
    assert note.signature_line("PeterNeumann", TEXT, key, public) == f"\u2014 PeterNeumann {GO_SIGNATURE}\n"


def test_a_checkpoint_note_opens_only_with_the_pinned_key_and_unchanged() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = keys.public_bytes(key)
    root = bytes(range(32))
    signed = note.signed("leder-audit", 7, root, key, public)
    origin, size, encoded, blank, line, end = signed.split("\n")
    assert (origin, size, encoded, blank, end) == (
        "leder-audit",
        "7",
        base64.b64encode(root).decode(),
        "",
        "",
    )
    assert line.startswith("\u2014 leder-audit ") and base64.b64decode(line.split()[-1])[:4] == note.key_hash(
        "leder-audit", public
    )
    assert note.open_note(signed, "leder-audit", public) == note.Published(7, root)
    for forged, why in (
        (signed.replace("\n7\n", "\n8\n"), "signature"),  # another tree size, same signature
        (note.signed("leder-audit", 7, root, other, keys.public_bytes(other)), "not signed by the pinned"),
        (note.signed("elsewhere", 7, root, key, public), "not a checkpoint of"),
        ("leder-audit\n7\n", "not a signed note"),
    ):
        try:
            note.open_note(forged, "leder-audit", public)
            raise AssertionError(f"a forged note opened: {forged!r}")
        except note.NotAVerifiedNote as refused:
            assert why in str(refused), refused


def test_the_published_file_is_read_note_by_note_and_a_note_another_key_signed_is_reported(
    tmp_path: Path,
) -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    public = keys.public_bytes(key)
    published = tmp_path / "checkpoints.log"
    for size in (1, 2):
        keys.publish(published, note.signed("leder-audit", size, bytes([size]) * 32, key, public))
    keys.publish(published, note.signed("leder-audit", 3, bytes(32), other, keys.public_bytes(other)))
    found, problems = keys.published(published, public, "leder-audit")
    assert found == [note.Published(1, bytes([1]) * 32), note.Published(2, bytes([2]) * 32)]
    assert len(problems) == 1 and "published checkpoint 3" in problems[0], problems
    assert keys.published(tmp_path / "none.log", public, "leder-audit") == ([], [])


def test_leder_up_makes_the_audit_key_pair_once_its_private_key_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    private, public = audit_key_files(tmp_path)
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert keys.load_public(public) == keys.public_bytes(keys.load_private(private))
    before = private.read_bytes()
    assert audit_key_files(tmp_path) == (private, public) and private.read_bytes() == before
