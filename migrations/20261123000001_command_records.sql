-- Idempotency that checks what it replays: a command id is recorded with what was asked
-- (command name, aggregate, a fingerprint of the input, who asked) and how it ended
-- (succeeded with versions, or rejected with the rejection). A repeat that asks for
-- something else is refused instead of being answered with another request's outcome.
ALTER TABLE commands
    ADD COLUMN command_name  text,
    ADD COLUMN fingerprint   text,
    ADD COLUMN principal     text,
    ADD COLUMN outcome       text  NOT NULL DEFAULT 'succeeded'
        CHECK (outcome IN ('succeeded', 'rejected')),
    ADD COLUMN rejection     jsonb,
    -- False for rows recorded before this migration: only their aggregate is known, so a
    -- repeat of one is checked against the aggregate alone.
    ADD COLUMN request_known boolean NOT NULL DEFAULT false,
    -- A rejected command appended nothing, so it has no versions.
    ALTER COLUMN first_version DROP NOT NULL,
    ALTER COLUMN last_version DROP NOT NULL,
    ADD CONSTRAINT commands_outcome_shape CHECK (
        (outcome = 'succeeded' AND first_version IS NOT NULL AND last_version IS NOT NULL)
        OR (outcome = 'rejected' AND rejection IS NOT NULL)
    );
