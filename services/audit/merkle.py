"""A Merkle tree over the audit log, as RFC 9162 (Certificate Transparency 2.0) defines it, and the
verification of its inclusion and consistency proofs. Standard library only, so that a third party
can check a proof without trusting (or installing) this system."""

import hashlib
from collections.abc import Sequence


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()
_NODE_PREFIX = hashlib.sha256(b"\x01")  # copied, never updated: OpenSSL 3 makes a copy cheaper than a new one


def _split(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Bottom-up, carrying an odd last node up unchanged: the same tree as RFC 9162's recursive split.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree of `leaves` (non-empty), leaves first, its root last, built as root()
    builds it: with these, each inclusion proof is a walk up, not a rehash of the whole tree."""
    if not leaves:
        raise ValueError("the empty tree has no levels")
    tree = [list(leaves)]
    while len(tree[-1]) > 1:
        level = tree[-1]
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        tree.append(paired)
    return tree


def path(index: int, tree: Sequence[Sequence[bytes]]) -> list[bytes]:
    """PATH(m, D[n]) from the tree's levels: the same proof as inclusion_proof(index, leaves)."""
    if not 0 <= index < len(tree[0]):
        raise ValueError(f"leaf {index} is not in a tree of {len(tree[0])}")
    proof = []
    for level in tree[:-1]:
        sibling = index ^ 1
        if sibling < len(level):  # an odd last node has no sibling here: it is carried up as it is
            proof.append(level[sibling])
        index >>= 1
    return proof


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) for the leaf at `index` in the tree of `leaves`."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): the tree of the first `first` leaves is a prefix of the tree of `leaves`."""
    if not 0 < first <= len(leaves):
        raise ValueError(f"no consistency proof from {first} to {len(leaves)}")
    return _subproof(first, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], whole), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def verify_inclusion(
    index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162, 2.1.3.2."""
    if index >= tree_size:
        return False
    return _walk_up(index, tree_size, leaf, proof) == expected_root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162, 2.1.4.2."""
    if first > second or first == 0:
        return False
    if first == second:
        return not proof and first_root == second_root
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree's root is a node of the second
        path.insert(0, first_root)
    if not path:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def push(frontier: list[tuple[int, bytes]], leaf: bytes) -> list[tuple[int, bytes]]:
    """Add a leaf to the tree's right edge (its perfect subtrees as (size, hash), largest first)."""
    edge = [*frontier, (1, leaf)]
    while len(edge) > 1 and edge[-1][0] == edge[-2][0]:
        (size, left), (_, right) = edge[-2], edge[-1]
        edge[-2:] = [(size * 2, node_hash(left, right))]
    return edge


def frontier_root(frontier: list[tuple[int, bytes]]) -> bytes:
    """MTH of the whole tree from its right edge (the same as RFC 9162's recursive split)."""
    if not frontier:
        return EMPTY_ROOT
    top = frontier[-1][1]
    for _, subtree in reversed(frontier[:-1]):
        top = node_hash(subtree, top)
    return top


# The tree's inner nodes, stored as tiles (C2SP tlog-tiles): a tile of level L holds up to 256
# consecutive hashes of the perfect subtrees of 256**L leaves, left to right; tile N of level L covers
# nodes 256N .. 256N+255 at height 8L. Level 0 holds the leaf hashes. A full tile (256 hashes) never
# changes; the right edge's tiles are partial and grow as entries are appended. With them, any perfect
# subtree's hash is at most 127 hashes of one tile away, so a proof reads O(log n) nodes.
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT


def push_completing(
    frontier: list[tuple[int, bytes]], leaf: bytes
) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    """push, and the perfect subtrees that end at the new leaf, smallest (the leaf itself) first: the
    k-th is the subtree of 2**k leaves, which the merges compute on the way."""
    edge, completed = [*frontier, (1, leaf)], [leaf]
    while len(edge) > 1 and edge[-1][0] == edge[-2][0]:
        (size, left), (_, right) = edge[-2], edge[-1]
        edge[-2:] = [(size * 2, node_hash(left, right))]
        completed.append(edge[-1][1])
    return edge, completed


def tile_cells(position: int, completed: Sequence[bytes]) -> list[tuple[int, int, int, bytes]]:
    """The stored tile cells an appended leaf fills, as (level, tile index, offset in the tile, hash):
    at each level L >= 1 the node of 256**L leaves it completes, if it completes one (level 0, the
    leaf hashes, is the log's own column)."""
    cells = []
    for level in range(1, len(completed)):
        height = level * TILE_HEIGHT
        if height >= len(completed):
            break
        node = position >> height
        cells.append((level, node >> TILE_HEIGHT, node & (TILE_WIDTH - 1), completed[height]))
    return cells


def tiles_of(leaves: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Every stored tile (level >= 1) of the tree of `leaves`, (level, index) -> its hashes
    concatenated: what appending the leaves one by one leaves stored."""
    out: dict[tuple[int, int], bytes] = {}
    level, row = 0, list(leaves)
    while True:
        row = [perfect_root(row[i : i + TILE_WIDTH]) for i in range(0, len(row) - TILE_WIDTH + 1, TILE_WIDTH)]
        if not row:
            return out
        level += 1
        for index in range(0, len(row), TILE_WIDTH):
            out[level, index // TILE_WIDTH] = b"".join(row[index : index + TILE_WIDTH])


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree from its 2**k lowest nodes, left to right."""
    row = list(hashes)
    while len(row) > 1:  # a proof hashes hundreds of these: from a copy of the prefix's state, cheaper
        above = []
        for i in range(0, len(row), 2):
            h = _NODE_PREFIX.copy()
            h.update(row[i])
            h.update(row[i + 1])
            above.append(h.digest())
        row = above
    return row[0]


def perfect_subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """[lo, hi) as RFC 9162's recursion splits it (lo a multiple of a power of two at least hi - lo),
    as perfect subtrees (height, index at that height), largest first: MTH(D[lo:hi]) is their fold from
    the right."""
    out, at = [], lo
    for height in range((hi - lo).bit_length() - 1, -1, -1):
        if (hi - lo) >> height & 1:
            out.append((height, at >> height))
            at += 1 << height
    return out


def subtree_cells(height: int, index: int) -> tuple[int, int, int, int]:
    """Where a perfect subtree's lowest stored nodes are: (level, tile index, first offset, count)."""
    level = height // TILE_HEIGHT
    below = height - level * TILE_HEIGHT
    first = index << below
    return level, first >> TILE_HEIGHT, first & (TILE_WIDTH - 1), 1 << below


def inclusion_ranges(index: int, n: int) -> list[tuple[int, int]]:
    """PATH(index, D[n]) as the leaf ranges whose MTH make it, in the proof's order (RFC 9162 2.1.3.1)."""
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of {n}")
    out: list[tuple[int, int]] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    return out[::-1]


def consistency_ranges(first: int, n: int) -> list[tuple[int, int]]:
    """PROOF(first, D[n]) as the leaf ranges whose MTH make it, in the proof's order (RFC 9162 2.1.4.1)."""
    if not 0 < first <= n:
        raise ValueError(f"no consistency proof from {first} to {n}")
    out: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, n, first, True
    while True:
        if m == hi - lo:
            if not whole:
                out.append((lo, hi))
            break
        k = _split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    return out[::-1]


def root_from_inclusion(index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to (RFC 9162 2.1.3.2's walk up): a proof built from the tree
    gives that tree's root in a few dozen hashes, without reading the rest of the tree."""
    walked = _walk_up(index, tree_size, leaf, proof)
    if walked is None:
        raise ValueError(f"not an inclusion proof of entry {index} in a tree of {tree_size}")
    return walked


def _walk_up(index: int, tree_size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2's walk from a leaf up its proof: the root it reaches, or None for a proof of
    the wrong length for the entry and the tree."""
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None
