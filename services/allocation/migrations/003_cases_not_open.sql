-- Cases the notification service has but has not opened: their eligibility is still to be confirmed,
-- or the LAC found them not eligible. Allocating one is refused naming that state (a 409), not
-- answered "no such case" (404). Written by the consumer from notification.EligibilityToConfirm and
-- EligibilityRejected (removed by CaseOpened), in the inbox transaction: not a projection of this
-- service's events, so a rebuild keeps it, like opened_cases. Cases that waited for eligibility before
-- this table existed are not in it (their notification events were consumed already).
CREATE TABLE cases_not_open (
    case_id uuid PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('eligibility_to_confirm', 'not_eligible'))
);
