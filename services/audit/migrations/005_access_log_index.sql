-- The access log lists the reads among every entry: a person's read of a case (each service's read
-- events, and any event on a case's reads stream) and the audit log's own. Its predicate is the same
-- text as services/audit/access.py's IS_READ, so that the access log's pages read this index, not
-- every entry in turn.
CREATE INDEX audit_log_reads_idx ON audit_log (position)
    WHERE (event_type IN ('notification.PersonalDetailsViewed', 'notification.CaseRead', 'review.ReviewRead', 'governance.CaseRead', 'audit.AuditLogRead') OR stream_id LIKE 'reads-%');
