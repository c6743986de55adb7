-- What the bridge has learned and must not forget, beside the SCIM resources: small JSON documents (the
-- suspension record, the hour's windows, the applied ROLE_MAP) and keyed memories (the identity map, the
-- OpenFGA objects written, the invitations Outline refused). `kind` says which;
-- `key` is a document's name or the JSON of a memory's key, and `value` is JSON.

CREATE TABLE remembered (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
