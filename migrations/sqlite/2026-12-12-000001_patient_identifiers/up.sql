-- Which record holds a current Patient with an identifier (`system|value`): a search that
-- names its patient by identifier (`DocumentReference?patient.identifier=…`, the INS of
-- ITI-67) finds the record with one probe keyed by the identifier, then runs in that record
-- alone, instead of asking the Patient index of every record (every partition, every shard
-- once distributed by patient). Kept in step with the Patient's `identifier` index rows in
-- the transaction that writes it (`store::identifiers`). Not a clinical table: keyed by what
-- it looks up. Only identifiers with a system whose system and value are whole index keys
-- (200 characters at most); a search for a longer one is not pinned.
CREATE TABLE patient_identifiers (
    system TEXT NOT NULL,
    value TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    PRIMARY KEY (system, value, patient_id)
);
-- A reindex rebuilds a Patient's rows from its body: it forgets them by patient first.
CREATE INDEX patient_identifiers_patient ON patient_identifiers (patient_id);
INSERT INTO patient_identifiers (system, value, patient_id)
    SELECT DISTINCT system, code, patient_id FROM search_tokens
    WHERE resource_type = 'Patient' AND param = 'identifier' AND patient_id <> ''
    AND system IS NOT NULL AND system_full IS NULL AND code_full IS NULL;
