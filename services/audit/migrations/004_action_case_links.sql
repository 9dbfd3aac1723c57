-- An action the Governance Group agrees for cases lives on a stream of its own (`action-…`) with no case
-- id: each entry of it is linked here to every case its ActionAgreed names, so each linked case's
-- history, state and export show the action and what became of it. The log's entries never change:
-- these tables are an index beside them, kept as entries are appended (services/audit/links.py).
CREATE TABLE audit_action_cases (
    action_id uuid NOT NULL,
    case_id uuid NOT NULL,
    PRIMARY KEY (action_id, case_id)
);
CREATE TABLE audit_case_links (
    case_id uuid NOT NULL,
    position bigint NOT NULL REFERENCES audit_log (position),
    PRIMARY KEY (case_id, position)
);

-- Backfill: the actions, and their entries, logged before this migration.
INSERT INTO audit_action_cases (action_id, case_id)
SELECT DISTINCT (l.envelope::jsonb -> 'data' ->> 'action_id')::uuid, c::uuid
FROM audit_log l, jsonb_array_elements_text(
    CASE WHEN jsonb_typeof(l.envelope::jsonb -> 'data' -> 'case_ids') = 'array'
         THEN l.envelope::jsonb -> 'data' -> 'case_ids' ELSE '[]'::jsonb END) AS c
WHERE l.event_type = 'governance.ActionAgreed'
  AND (l.envelope::jsonb -> 'data' ->> 'action_id') ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
  AND c ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
ON CONFLICT DO NOTHING;

INSERT INTO audit_case_links (case_id, position)
SELECT ac.case_id, l.position
FROM audit_log l
JOIN audit_action_cases ac ON ac.action_id::text = lower(l.envelope::jsonb -> 'data' ->> 'action_id')
WHERE l.event_type IN ('governance.ActionAgreed', 'governance.ActionProgressUpdated',
                       'governance.ActionCompleted', 'governance.ActionOverdue')
ON CONFLICT DO NOTHING;
