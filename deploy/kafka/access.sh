#!/bin/bash
# Who may do what on the Kafka of docker-compose.yml: run by its kafka-access job after the topics job,
# from inside the broker's network namespace (the loopback listener, whose ANONYMOUS principal is the
# broker's only super user: deploy/kafka/server.properties). Idempotent: run it again after changing a
# password file or the partners folder (`docker compose up kafka-access`).
#
# Principals (SCRAM-SHA-512):
#   leder-<service>   one per service (notification, allocation, review, governance, audit); its
#                     password is the service's compose secret kafka_<service>_password. The web
#                     application does not use Kafka and has no principal.
#   partner-<ODS>     one per partner organisation (a hospital trust, a CDOP...), named by its ODS code;
#                     its password is the file of that name in the partners folder
#                     (LEDER_KAFKA_PARTNER_PASSWORDS_DIR). A partner whose file is removed loses its
#                     credential and its ACL on the next run.
#
# ACLs (the broker denies what none allows: allow.everyone.if.no.acl.found=false). Each service may
#   WRITE  its own topic, leder.<service>.events (its outbox relay), and the DLQ of each topic it
#          consumes (a consumer dead-letters what it cannot apply to <topic>.dlq);
#   READ   each topic it consumes, each with the consumer group of that consumer
#          (leder.<service>.<consumer>, as infra/service.py names them).
# WRITE and READ imply DESCRIBE, which is all the relay's offset reader needs on its own topic. No
# service may create, delete or alter a topic: the topics job made them all. A partner may WRITE the
# partner topic and nothing else (not even read it back). Every rule is one `acl` line below, and
# tests/unit/test_compose_file.py checks them against what services/*/consumers.py consume.
set -euo pipefail
shopt -s nullglob

bootstrap=127.0.0.1:9094
# (The folders can be moved for tests/unit/test_compose_file.py, which runs this script against
# stand-ins for Kafka's tools.)
bin=${KAFKA_BIN:-/opt/kafka/bin}
secrets=${LEDER_SECRETS_DIR:-/run/secrets}
partners=${LEDER_KAFKA_PARTNERS_DIR:-/run/leder/kafka-partners}
partner_topic=leder.partner.death-notifications
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx256m}

kafka_configs() { "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" "$@"; }
kafka_acls() { "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" "$@"; }
acl() { kafka_acls --add "$@" >/dev/null; }

# scram PRINCIPAL PASSWORD_FILE: create the principal's credential, or set its password anew.
scram() {
  local password
  password=$(< "$2")
  # kafka-configs reads [password=...] up to a comma or a bracket; hex (as .env.example generates)
  # and other letters, digits, '-' and '_' pass unharmed, and 32 of them are the floor.
  if [[ ! $password =~ ^[A-Za-z0-9_-]{32,}$ ]]; then
    echo "$2: the password must be at least 32 letters, digits, '-' or '_'" >&2
    exit 1
  fi
  kafka_configs --alter --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]" >/dev/null
  echo "principal $1: SCRAM-SHA-512 credential set"
}

for service in notification allocation review governance audit; do
  scram "leder-$service" "$secrets/kafka_${service}_password"
done

# notification: consumes the partner topic and the allocation, review and governance events.
acl --allow-principal User:leder-notification --operation Write --topic leder.notification.events
acl --allow-principal User:leder-notification --operation Read --topic leder.partner.death-notifications --group leder.notification.partner-notifications
acl --allow-principal User:leder-notification --operation Write --topic leder.partner.death-notifications.dlq
acl --allow-principal User:leder-notification --operation Read --topic leder.allocation.events --group leder.notification.allocation-events
acl --allow-principal User:leder-notification --operation Write --topic leder.allocation.events.dlq
acl --allow-principal User:leder-notification --operation Read --topic leder.review.events --group leder.notification.review-events
acl --allow-principal User:leder-notification --operation Write --topic leder.review.events.dlq
acl --allow-principal User:leder-notification --operation Read --topic leder.governance.events --group leder.notification.governance-events
acl --allow-principal User:leder-notification --operation Write --topic leder.governance.events.dlq

# allocation: consumes the notification, review and governance events.
acl --allow-principal User:leder-allocation --operation Write --topic leder.allocation.events
acl --allow-principal User:leder-allocation --operation Read --topic leder.notification.events --group leder.allocation.notification-events
acl --allow-principal User:leder-allocation --operation Write --topic leder.notification.events.dlq
acl --allow-principal User:leder-allocation --operation Read --topic leder.review.events --group leder.allocation.review-events
acl --allow-principal User:leder-allocation --operation Write --topic leder.review.events.dlq
acl --allow-principal User:leder-allocation --operation Read --topic leder.governance.events --group leder.allocation.governance-events
acl --allow-principal User:leder-allocation --operation Write --topic leder.governance.events.dlq

# review: consumes the allocation, notification and governance events.
acl --allow-principal User:leder-review --operation Write --topic leder.review.events
acl --allow-principal User:leder-review --operation Read --topic leder.allocation.events --group leder.review.allocation-events
acl --allow-principal User:leder-review --operation Write --topic leder.allocation.events.dlq
acl --allow-principal User:leder-review --operation Read --topic leder.notification.events --group leder.review.notification-events
acl --allow-principal User:leder-review --operation Write --topic leder.notification.events.dlq
acl --allow-principal User:leder-review --operation Read --topic leder.governance.events --group leder.review.governance-events
acl --allow-principal User:leder-review --operation Write --topic leder.governance.events.dlq

# governance: consumes the notification, allocation and review events.
acl --allow-principal User:leder-governance --operation Write --topic leder.governance.events
acl --allow-principal User:leder-governance --operation Read --topic leder.notification.events --group leder.governance.notification-events
acl --allow-principal User:leder-governance --operation Write --topic leder.notification.events.dlq
acl --allow-principal User:leder-governance --operation Read --topic leder.allocation.events --group leder.governance.allocation-events
acl --allow-principal User:leder-governance --operation Write --topic leder.allocation.events.dlq
acl --allow-principal User:leder-governance --operation Read --topic leder.review.events --group leder.governance.review-events
acl --allow-principal User:leder-governance --operation Write --topic leder.review.events.dlq

# audit: consumes every other service's events and the partner topic's DLQ (each refused notification
# is recorded). The partner DLQ's consumer has no DLQ of its own: no such topic is made.
acl --allow-principal User:leder-audit --operation Write --topic leder.audit.events
acl --allow-principal User:leder-audit --operation Read --topic leder.notification.events --group leder.audit.notification-events
acl --allow-principal User:leder-audit --operation Write --topic leder.notification.events.dlq
acl --allow-principal User:leder-audit --operation Read --topic leder.allocation.events --group leder.audit.allocation-events
acl --allow-principal User:leder-audit --operation Write --topic leder.allocation.events.dlq
acl --allow-principal User:leder-audit --operation Read --topic leder.review.events --group leder.audit.review-events
acl --allow-principal User:leder-audit --operation Write --topic leder.review.events.dlq
acl --allow-principal User:leder-audit --operation Read --topic leder.governance.events --group leder.audit.governance-events
acl --allow-principal User:leder-audit --operation Write --topic leder.governance.events.dlq
acl --allow-principal User:leder-audit --operation Read --topic leder.partner.death-notifications.dlq --group leder.audit.partner-dlq

# Partners: one principal each, allowed to write the partner topic only. The principal is what
# vouches for the organisation (README, "Kafka in production"): partner-RX1 speaks for RX1.
declare -A current=()
for file in "$partners"/partner-*; do
  principal=$(basename "$file")
  if [[ ! $principal =~ ^partner-[A-Za-z0-9]+$ ]]; then
    echo "$file: a partner's file is named partner-<ODS code>, letters and digits only" >&2
    exit 1
  fi
  scram "$principal" "$file"
  acl --allow-principal "User:$principal" --operation Write --topic "$partner_topic"
  current[$principal]=1
done

# A partner no longer in the folder: its credential and its ACL go.
while IFS= read -r line; do
  if [[ $line =~ user-principal\ \'(partner-[^\']+)\' ]]; then
    principal=${BASH_REMATCH[1]}
    if [[ -z ${current[$principal]:-} ]]; then
      kafka_configs --alter --entity-type users --entity-name "$principal" --delete-config SCRAM-SHA-512 >/dev/null
      kafka_acls --remove --force --allow-principal "User:$principal" --operation Write \
        --topic "$partner_topic" >/dev/null
      echo "principal $principal: removed (no file in the partners folder)"
    fi
  fi
done < <(kafka_configs --describe --entity-type users)

echo "Kafka principals and ACLs set: 5 services, ${#current[@]} partners"
