-- Tillbridge edge storage, PostgreSQL. Keep in step with ../../sqlite/ (same tables, columns and
-- indexes; only the auto-increment id type differs). Payloads are JSON as TEXT, kept as
-- received; times are epoch milliseconds.

-- Inbound records: stored before the engine sees them. Ids come from a sequence (never reused),
-- so "records after id N" is a replay order.
CREATE TABLE records (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    external_id TEXT,
    payload TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- A second record with the same sender id is a duplicate (NULLs never collide).
CREATE UNIQUE INDEX records_sender_id ON records (kind, origin, external_id);
CREATE INDEX records_state ON records (state, id);
CREATE INDEX records_kind ON records (kind, id);

CREATE TABLE record_events (
    id BIGSERIAL PRIMARY KEY,
    record_id BIGINT NOT NULL REFERENCES records (id),
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX record_events_record ON record_events (record_id, id);

-- The outbox: one row per command, its idempotency key unique.
CREATE TABLE commands (
    command_id BIGINT PRIMARY KEY NOT NULL,
    idempotency_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    detail TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX commands_idempotency_key ON commands (idempotency_key);
CREATE INDEX commands_state ON commands (state, command_id);

-- No foreign key: the engine journals a command's plan before the runner stores the command.
CREATE TABLE command_events (
    id BIGSERIAL PRIMARY KEY,
    command_id BIGINT NOT NULL,
    attempt INTEGER NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX command_events_command ON command_events (command_id, id);

CREATE TABLE exceptions (
    id BIGINT PRIMARY KEY NOT NULL,
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    raised_at BIGINT NOT NULL,
    records TEXT NOT NULL,
    resolved_at BIGINT,
    resolution TEXT
);
CREATE INDEX exceptions_open ON exceptions (resolved_at, id);

-- Which stored records an exception names (its `records` that are record ids).
CREATE TABLE exception_records (
    exception_id BIGINT NOT NULL REFERENCES exceptions (id),
    record_id BIGINT NOT NULL,
    PRIMARY KEY (exception_id, record_id)
);
CREATE INDEX exception_records_record ON exception_records (record_id);

CREATE TABLE latencies (
    id BIGSERIAL PRIMARY KEY,
    stock_key TEXT NOT NULL,
    ms BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX latencies_at ON latencies (at);

-- Feed cursors: the Store's own (`cursor`/`save_cursor`) and the POS inbox's (`pos:...`,
-- with the batch each follows).
CREATE TABLE cursors (
    feed TEXT PRIMARY KEY NOT NULL,
    cursor TEXT NOT NULL,
    after_batch TEXT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE snapshots (
    id BIGSERIAL PRIMARY KEY,
    engine TEXT NOT NULL,
    last_record BIGINT NOT NULL,
    taken_at BIGINT NOT NULL
);

-- POS batches as read (the PosInbox), unique by their content-derived id.
CREATE TABLE pos_batches (
    seq BIGSERIAL PRIMARY KEY,
    batch_id TEXT NOT NULL,
    connector TEXT NOT NULL,
    feed TEXT NOT NULL,
    source TEXT,
    body TEXT NOT NULL,
    records INTEGER NOT NULL,
    record_errors INTEGER NOT NULL,
    stored_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX pos_batches_batch_id ON pos_batches (batch_id);
