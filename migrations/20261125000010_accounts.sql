-- Staff accounts, their sessions, API tokens for instruments, login throttling, and the
-- audit trail of who administered what (lab/src/accounts/mod.rs explains the design).

CREATE TABLE users (
    id                  uuid PRIMARY KEY,
    -- What the person types at login; unique whatever its case.
    username            text NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
    -- What the audit trail and every page show.
    display_name        text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 100),
    role                text NOT NULL CHECK (role IN ('viewer', 'technician', 'lab_manager', 'admin')),
    -- PHC string ($argon2id$...); never the password.
    password_hash       text NOT NULL,
    enabled             boolean NOT NULL DEFAULT true,
    password_changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_by          uuid REFERENCES users (id)
);
CREATE UNIQUE INDEX users_username ON users (lower(username));

-- Server-side sessions. The cookie carries 32 random bytes; only their SHA-256 is kept,
-- so a copy of this table does not let anyone in.
CREATE TABLE sessions (
    id_hash      bytea PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The synchronizer token every state-changing form of this session carries.
    csrf_token   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seen_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Absolute expiry, fixed at login; idle expiry is last_seen_at + the idle timeout.
    expires_at   timestamptz NOT NULL,
    address      text
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Bearer tokens for instruments and integrations: a role of their own, the hash only.
CREATE TABLE api_tokens (
    id           uuid PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role         text NOT NULL CHECK (role IN ('viewer', 'technician', 'lab_manager', 'admin')),
    token_hash   bytea NOT NULL UNIQUE,
    -- The first characters of the token, so an operator can tell tokens apart.
    prefix       text NOT NULL,
    created_by   uuid NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    revoked_by   uuid REFERENCES users (id)
);

-- Failed logins (and failed signature passwords), counted per account and per address
-- over a sliding window.
CREATE TABLE login_failures (
    key       text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX login_failures_key ON login_failures (key, failed_at);

-- Who administered accounts and tokens, who logged in and out: append-only.
CREATE TABLE account_audit (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_id   uuid,
    actor_name text,
    action     text NOT NULL,
    subject    text,
    detail     text,
    address    text
);
CREATE INDEX account_audit_at ON account_audit (at);
