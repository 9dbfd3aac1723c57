"""The audit log's Merkle tree against RFC 9162's definitions: every proof verifies, and any change
to a proof, a leaf or a root makes it fail."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.audit import merkle


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(f"event {i}".encode()) for i in range(n)]


def mth(hashes: list[bytes]) -> bytes:
    """RFC 9162's recursive definition, written out literally, to check the iterative one against."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k << 1 < len(hashes):
        k <<= 1
    return merkle.node_hash(mth(hashes[:k]), mth(hashes[k:]))


def test_the_empty_tree_and_the_hash_prefixes_follow_the_rfc() -> None:
    assert merkle.root([]) == hashlib.sha256(b"").digest()
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert merkle.node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 9, 31, 64, 100])
def test_the_root_is_the_rfc_tree_hash(n: int) -> None:
    assert merkle.root(leaves(n)) == mth(leaves(n))


@given(st.integers(1, 80).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_every_inclusion_proof_verifies_and_a_changed_one_does_not(case: tuple[int, int]) -> None:
    n, i = case
    tree = leaves(n)
    proof = merkle.inclusion_proof(i, tree)
    top = merkle.root(tree)
    assert merkle.verify_inclusion(i, n, tree[i], proof, top)
    assert not merkle.verify_inclusion(i, n, merkle.leaf_hash(b"forged"), proof, top)
    if proof:
        broken = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
        assert not merkle.verify_inclusion(i, n, tree[i], broken, top)
    if n > 1:
        assert not merkle.verify_inclusion((i + 1) % n, n, tree[i], proof, top)


@given(st.integers(1, 80).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_every_consistency_proof_verifies_and_a_rewritten_history_does_not(case: tuple[int, int]) -> None:
    m, n = case
    tree = leaves(n)
    proof = merkle.consistency_proof(m, tree)
    old, new = merkle.root(tree[:m]), merkle.root(tree)
    assert merkle.verify_consistency(m, n, old, new, proof)
    rewritten = [merkle.leaf_hash(b"rewritten"), *tree[1:]]
    if m < n:
        assert not merkle.verify_consistency(m, n, merkle.root(rewritten[:m]), new, proof)
        if proof:
            broken = [*proof[:-1], proof[-1][:-1] + bytes([proof[-1][-1] ^ 1])]
            assert not merkle.verify_consistency(m, n, old, new, broken)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 33])
def test_the_right_edge_gives_the_same_root_at_every_size(n: int) -> None:
    frontier: list[tuple[int, bytes]] = []
    tree = leaves(n)
    for i, leaf in enumerate(tree):
        frontier = merkle.push(frontier, leaf)
        assert merkle.frontier_root(frontier) == mth(tree[: i + 1])


@given(st.integers(1, 80).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_the_proof_from_the_levels_is_the_rfc_inclusion_proof(case: tuple[int, int]) -> None:
    n, i = case
    tree = leaves(n)
    built = merkle.levels(tree)
    assert built[0] == tree and built[-1] == [mth(tree)]
    assert merkle.path(i, built) == merkle.inclusion_proof(i, tree)
    with pytest.raises(ValueError):
        merkle.path(n, built)
