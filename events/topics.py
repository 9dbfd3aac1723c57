"""Topic names. A prefix keeps test runs (and several ICB environments on one cluster) apart."""

SERVICES = ("notification", "allocation", "review", "governance", "audit")
PARTNER_NOTIFICATIONS = "leder.partner.death-notifications"


def service_topic(service: str, prefix: str = "") -> str:
    return f"{prefix}leder.{service}.events"


def partner_topic(prefix: str = "") -> str:
    return f"{prefix}{PARTNER_NOTIFICATIONS}"


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics(prefix: str = "") -> list[str]:
    topics = [service_topic(s, prefix) for s in SERVICES] + [partner_topic(prefix)]
    return topics + [dlq(t) for t in topics]
