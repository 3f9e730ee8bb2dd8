"""The alert outbox's tables (billing/alerts/outbox.py): a SQLite file of its own beside the
warehouse (alerts/outbox.sqlite), so deliveries never hold the warehouse's write lock."""

OUTBOX_DDL = (
    """
    CREATE TABLE IF NOT EXISTS notifications (
        key TEXT PRIMARY KEY,
        alert TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        subscription_id TEXT NOT NULL,
        period_start TEXT NOT NULL,
        metric TEXT NOT NULL CHECK (metric IN ('usage', 'spend')),
        meter TEXT,
        value TEXT NOT NULL,
        threshold TEXT NOT NULL,
        thresholds_crossed TEXT NOT NULL,
        body BLOB NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'delivered', 'rejected')),
        attempts INTEGER NOT NULL DEFAULT 0,
        last_status_code INTEGER,
        last_error TEXT,
        created_at TEXT NOT NULL,
        last_attempt_at TEXT,
        delivered_at TEXT
    )
    """,
    "CREATE INDEX IF NOT EXISTS notifications_by_status ON notifications (status, created_at)",
    """
    CREATE TABLE IF NOT EXISTS fired_thresholds (
        alert TEXT NOT NULL,
        subscription_id TEXT NOT NULL,
        period_start TEXT NOT NULL,
        threshold TEXT NOT NULL,
        notification_key TEXT NOT NULL REFERENCES notifications (key),
        PRIMARY KEY (alert, subscription_id, period_start, threshold)
    )
    """,
)
