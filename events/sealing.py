"""A value sealed under a case's data key: what events carry in place of personal data."""

from pydantic import BaseModel, ConfigDict, Field


class Sealed(BaseModel):
    """AES-256-GCM ciphertext under the data key `key_id` (the case's key in the service that sealed
    it), with `key_id` as associated data. Destroying that key at the end of the retention period makes
    every copy unreadable, wherever it travelled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    nonce: str = Field(description="base64")
    ciphertext: str = Field(description="base64")
