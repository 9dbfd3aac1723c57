"""The roles people hold, in words, and where each one starts."""

ROLE_NAMES = {
    "lac": "Local Area Contact",
    "reviewer": "Reviewer",
    "senior_reviewer": "Senior reviewer",
    "qa_panel": "QA panel member",
    "governance": "Governance Group",
    "ig_officer": "Information governance officer",
    "partner_system": "Partner staff",
}

HOME = {
    "lac": "/lac",
    "reviewer": "/reviews",
    "senior_reviewer": "/reviews",
    "qa_panel": "/qa",
    "governance": "/governance",
    "ig_officer": "/ig",
    "partner_system": "/notify",
}

# The header's menu for each role: (link, words).
NAVIGATION: dict[str, list[tuple[str, str]]] = {
    "lac": [
        ("/lac", "Today"),
        ("/lac/cases", "Cases"),
        ("/lac/queue", "Allocation queue"),
        ("/lac/reviewers", "Reviewers"),
        ("/lac/panels", "QA panels"),
    ],
    "reviewer": [("/reviews", "My cases")],
    "senior_reviewer": [("/reviews", "My cases")],
    "qa_panel": [("/qa", "QA panels")],
    "governance": [("/governance", "Actions"), ("/governance/reports", "Reports")],
    "ig_officer": [
        ("/ig", "Find a case"),
        ("/ig/access", "Access log"),
        ("/ig/verification", "Log verification"),
    ],
    "partner_system": [("/notify", "Notify a death")],
}
