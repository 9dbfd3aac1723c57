"""The audit log's tiles (C2SP tlog-tiles, height 8) and the proofs read from them: the leaf ranges a
proof is made of give exactly RFC 9162's proofs, and the tiles appending fills are the tiles of the
tree."""

import hashlib

import pytest

from services.audit import merkle


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


def mth(hashes: list[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) from the range's perfect subtrees, as the log reads them from its tiles."""
    parts = [merkle.perfect_root(hashes[i << h : (i + 1) << h]) for h, i in merkle.perfect_subtrees(lo, hi)]
    top = parts[-1]
    for part in reversed(parts[:-1]):
        top = merkle.node_hash(part, top)
    return top


@pytest.mark.parametrize("n", range(1, 41))
def test_the_ranges_of_each_proof_hash_to_the_rfc_proofs(n: int) -> None:
    tree = leaves(n)
    for index in range(n):
        path = [mth(tree, lo, hi) for lo, hi in merkle.inclusion_ranges(index, n)]
        assert path == merkle.inclusion_proof(index, tree)
    for first in range(1, n + 1):
        proof = [mth(tree, lo, hi) for lo, hi in merkle.consistency_ranges(first, n)]
        assert proof == merkle.consistency_proof(first, tree)
        assert mth(tree, 0, first) == merkle.root(tree[:first])


def test_a_proof_in_a_large_tree_is_made_of_few_ranges() -> None:
    n = 1_000_003
    assert len(merkle.inclusion_ranges(777_777, n)) <= n.bit_length()
    subtrees = {s for r in merkle.inclusion_ranges(777_777, n) for s in merkle.perfect_subtrees(*r)}
    assert len(subtrees) <= 2 * n.bit_length()
    with pytest.raises(ValueError):
        merkle.inclusion_ranges(n, n)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(0, n)


def test_appending_fills_the_tiles_of_the_tree_and_each_subtree_is_found_in_one() -> None:
    tree = leaves(66_000)  # past 256 * 256: a tile of level 2
    frontier: list[tuple[int, bytes]] = []
    pushed: list[tuple[int, bytes]] = []
    filled: dict[tuple[int, int], bytes] = {}
    for position, leaf in enumerate(tree):
        frontier, completed = merkle.push_completing(frontier, leaf)
        pushed = merkle.push(pushed, leaf)
        assert frontier == pushed and completed[-1] == frontier[-1][1]
        for level, index, offset, node in merkle.tile_cells(position, completed):
            assert len(filled.get((level, index), b"")) == 32 * offset
            filled[level, index] = filled.get((level, index), b"") + node
    assert filled == merkle.tiles_of(tree)
    assert sorted(filled) == [(1, 0), (1, 1), (2, 0)]
    assert len(filled[1, 0]) == 32 * 256 and len(filled[1, 1]) == 32 * (66_000 // 256 - 256)
    for height, index in [(8, 3), (11, 2), (16, 0), (9, 127), (8, 256)]:
        level, tile, offset, count = merkle.subtree_cells(height, index)
        cells = filled[level, tile][32 * offset : 32 * (offset + count)]
        nodes = [cells[at : at + 32] for at in range(0, len(cells), 32)]
        assert merkle.perfect_root(nodes) == merkle.root(tree[index << height : (index + 1) << height])
