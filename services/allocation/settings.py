"""The allocation service's configuration, read from the environment at its edge and passed to the
domain as arguments (the domain reads no environment)."""

import os

from services.allocation.domain import DEFAULT_CONFLICT_RULE, ConflictRule


def conflict_rule() -> ConflictRule:
    """LEDER_CONFLICT_RULE: `employing_organisation` (the default) or `standing_only` (see
    domain.ConflictRule). Read at each call, so a change of configuration applies to the next
    allocation without a restart of anything that imported this module."""
    return os.environ.get("LEDER_CONFLICT_RULE", DEFAULT_CONFLICT_RULE)
