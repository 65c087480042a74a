-- Leases: which replica runs the engine. One row per lease; a holder renews it every round and
-- a standby takes it once `expires_at` (epoch ms) has passed.
CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
