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
    fn, sn, r = index, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
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
    return sn == 0 and r == expected_root


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


class RightEdge:
    """push and frontier_root in one pass over a whole log: add each leaf in turn and get the tree
    head after it. Kept as bare hashes (the sizes are the bits of the count), to verify a log of
    millions of entries without building a list per entry."""

    __slots__ = ("_edge", "size")

    def __init__(self) -> None:
        self._edge: list[bytes] = []
        self.size = 0

    def add(self, leaf: bytes) -> bytes:
        sha256, edge = hashlib.sha256, self._edge
        node, n = leaf, self.size
        while n & 1:  # equal perfect subtrees merge: as many as the count's trailing one bits
            node = sha256(b"\x01" + edge.pop() + node).digest()
            n >>= 1
        edge.append(node)
        self.size += 1
        top = node
        for i in range(len(edge) - 2, -1, -1):
            top = sha256(b"\x01" + edge[i] + top).digest()
        return top


def frontier_root(frontier: list[tuple[int, bytes]]) -> bytes:
    """MTH of the whole tree from its right edge (the same as RFC 9162's recursive split)."""
    if not frontier:
        return EMPTY_ROOT
    top = frontier[-1][1]
    for _, subtree in reversed(frontier[:-1]):
        top = node_hash(subtree, top)
    return top
