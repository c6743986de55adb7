-- The SCIM resources as the identity provider sent them. `body` keeps the JSON it sent (without `id` and
-- `meta`), so that answers echo it exactly; the other columns are derived from it for look-ups.

CREATE TABLE scim_users (
    -- The person's key inside the bridge (its jobs, its suspension record). AUTOINCREMENT: a deleted
    -- person's key is never given to someone else.
    pk INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    user_name TEXT NOT NULL,
    -- userName is unique without case (RFC 7643 §4.1.1).
    user_name_key TEXT NOT NULL UNIQUE,
    external_id TEXT,
    display_name TEXT,
    email TEXT,
    email_key TEXT,
    active INTEGER NOT NULL,
    body TEXT NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX scim_users_external_id ON scim_users (external_id);
CREATE INDEX scim_users_email_key ON scim_users (email_key);

CREATE TABLE scim_groups (
    id TEXT PRIMARY KEY NOT NULL,
    -- What the sinks know the group by (Outline's externalId, OpenFGA's object): the externalId the identity
    -- provider sent when it created the group, else the SCIM id. It never changes afterwards.
    link_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    -- Groups are adopted by displayName after a 409, so it is unique without case here.
    display_name_key TEXT NOT NULL UNIQUE,
    external_id TEXT,
    body TEXT NOT NULL,
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE INDEX scim_groups_external_id ON scim_groups (external_id);

CREATE TABLE scim_members (
    group_id TEXT NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_pk INTEGER NOT NULL REFERENCES scim_users (pk) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_pk)
);
CREATE INDEX scim_members_user ON scim_members (user_pk);
