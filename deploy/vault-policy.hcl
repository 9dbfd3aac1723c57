# The Vault policy of one LeDeR service: replace SERVICE with notification, allocation, review,
# governance or audit, and give the service a token with this policy only (LEDER_<SERVICE>_VAULT_TOKEN).
# It reaches that service's key-encryption keys (one per case: leder-SERVICE-<case>) and its matching
# key (leder-hmac-SERVICE-...), nothing of another service's. Deleting a key is shredding: only the
# service's retention sweep does it. Assumes the transit engine is mounted at "transit" and a KV v2
# engine at "secret", which keeps each data key's wrapping (never the key) so that `leder recover` can
# give a restored database the keys made after its backup (infra/keys.py, escrow).
#
#   vault secrets enable transit
#   vault secrets enable -path=secret kv-v2
#   sed s/SERVICE/notification/g deploy/vault-policy.hcl | vault policy write leder-notification -
#   vault token create -policy=leder-notification -period=768h

path "transit/keys/leder-SERVICE-*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "transit/keys/leder-SERVICE-*/rotate" {
  capabilities = ["update"]
}
path "transit/keys/leder-SERVICE-*/config" {
  capabilities = ["update"]
}
path "transit/encrypt/leder-SERVICE-*" {
  capabilities = ["update"]
}
path "transit/decrypt/leder-SERVICE-*" {
  capabilities = ["update"]
}
path "transit/rewrap/leder-SERVICE-*" {
  capabilities = ["update"]
}
path "transit/keys/leder-hmac-SERVICE-*" {
  capabilities = ["create", "read", "update"]
}
path "transit/hmac/leder-hmac-SERVICE-*" {
  capabilities = ["update"]
}
# Rotation lists the keys to rotate (names only; no key material).
path "transit/keys" {
  capabilities = ["list"]
}
# The backup of each data key's wrapping; shredding deletes its metadata, and with it every version.
path "secret/data/leder/data-keys/leder-SERVICE-*" {
  capabilities = ["create", "read", "update"]
}
path "secret/metadata/leder/data-keys/leder-SERVICE-*" {
  capabilities = ["delete"]
}
