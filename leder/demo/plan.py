"""What a reviewer records, and when: a review's steps as (working day after allocation, record,
body). Plain data from the caseload, so a seed always gives the same reviews."""

from typing import Any

from leder.demo.caseload import Notice, Story

Step = tuple[int, str, dict[str, Any]]


def review_steps(notice: Notice, story: Story) -> list[Step]:
    """The reviewer's records over the review's working days, in the order reviews go. Every
    reviewer hears from two agencies and reads two sets of records, as a focused review needs: a
    review may become focused on the way (a lapse in care, an ethnicity recorded late)."""
    person = notice.body["person"]
    span = story.review_days
    org = next(iter(notice.body["organisations_involved"]), "Sirona Care and Health")
    family_wanted = notice.body["next_of_kin"]["involve_family"]

    def on(fraction: float) -> int:
        return max(1, round(span * fraction))

    steps: list[Step] = [
        (on(0.05), "contacts", {"party": "family", "status": "offered"}),
        (on(0.08), "records", {"source": "GP", "requested_on": None}),
        (
            on(0.15),
            "contacts",
            {"party": "family", "status": "completed" if family_wanted else "not_wanted"},
        ),
        (on(0.2), "contacts", {"party": "gp", "status": "completed"}),
        (on(0.25), "records", {"source": "GP", "received_on": None}),
        (
            on(0.35),
            "contacts",
            {
                "party": "professional",
                "status": "completed",
                "role": "learning disability nurse",
                "organisation": "Sirona Care and Health",
            },
        ),
        (
            on(0.5),
            "pen-portrait",
            {"text": f"{person['given_name']} loved music, Saturday swimming and visits from family."},
        ),
        (
            on(0.6),
            "care-judgements",
            {
                "phase": "final illness",
                "grade": 4 if story.lapse_in_care else story.care_grade,
                "rationale": "how the final illness was recognised and treated",
            },
        ),
        (on(0.7), "good-practice", {"text": "a hospital passport was used", "themes": ["communication"]}),
        (
            on(0.75),
            "learning",
            {"text": "what this death teaches local services", "themes": list(story.themes)},
        ),
        (
            on(0.8),
            "recommendations",
            {"what": "make reasonable adjustments routine", "organisation": org},
        ),
        (
            on(0.85),
            "cause-of-death",
            {
                "cause": notice.body["death"]["cause_of_death"],
                "preventable_or_treatable": story.preventable_or_treatable,
                "age_at_death": notice.age_at_death,
            },
        ),
        (on(0.9), "family-involvement", {"step": "invited_to_comment"}),
    ]
    steps += [
        (
            on(0.4),
            "contacts",
            {"party": "professional", "status": "completed", "role": "ward manager", "organisation": org},
        ),
        (on(0.45), "records", {"source": org, "received_on": None}),
    ]
    if story.lapse_in_care:
        steps.append(
            (
                on(0.55),
                "lapses-in-care",
                {
                    "what": "deterioration was not escalated",
                    "where": "ward",
                    "organisation": org,
                    "contribution": "possibly_contributed",
                },
            )
        )
    steps.sort(key=lambda s: s[0])
    if story.pause_after is not None:
        pause_at = min(story.pause_after, span - 1)
        steps = [(o + story.pause_days if o >= pause_at else o, p, b) for o, p, b in steps]
        steps += [
            (pause_at, "pause", {"reason": story.pause_reason}),
            (pause_at + 1, "notes", {"text": "waiting for the inquest; the family know"}),
            (pause_at + story.pause_days, "resumption", {}),
        ]
        # On the day it resumes, the resumption comes before the work that waited for it.
        rank = {"pause": 0, "resumption": 0, "notes": 1}
        steps.sort(key=lambda s: (s[0], rank.get(s[1], 2)))
    return steps
