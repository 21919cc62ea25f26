-- Anomaly alerts (grains/Alerts): one row per alert raised, with the webhook's delivery state. The runtime may add
-- alerts and record their delivery, never rewrite what an alert says.
CREATE TABLE IF NOT EXISTS spine_alerts
(
    alert_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raised_at           timestamptz      NOT NULL,
    workflow_type       text             NOT NULL,
    rule                text             NOT NULL,
    subject             text,
    message             text             NOT NULL,
    observed            double precision NOT NULL,
    baseline            double precision,
    runs                integer          NOT NULL,
    delivery_attempts   integer          NOT NULL DEFAULT 0,
    delivered_at        timestamptz,
    last_delivery_error text,
    -- An evaluation repeated after a crash raises the same alerts under the same keys: stored once.
    dedupe_key          text             NOT NULL UNIQUE
);

CREATE INDEX IF NOT EXISTS spine_alerts_raised_idx ON spine_alerts (raised_at DESC);
CREATE INDEX IF NOT EXISTS spine_alerts_undelivered_idx ON spine_alerts (alert_id) WHERE delivered_at IS NULL;

GRANT SELECT, INSERT ON spine_alerts TO spine_runtime;
GRANT UPDATE (delivery_attempts, delivered_at, last_delivery_error) ON spine_alerts TO spine_runtime;
