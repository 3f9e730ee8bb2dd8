"""The dunning outbox's tables (billing/dunning/outbox.py): a SQLite file of its own beside the
warehouse (dunning/outbox.sqlite), so sending mail never holds the warehouse's write lock.

One row per (invoice, step), ever: the primary key is what makes a reminder exactly-once. A
row is written when the step is decided, with the message exactly as it will be sent (its
bytes, its Message-ID), and only its status and outcome change afterwards:

    pending -> sending -> sent
                       -> pending (a temporary failure: tried again by the next run)
                       -> failed  (the server refused it for good: 5xx)
    pending | sending -> cancelled (the invoice was paid, voided, credited, or owes too little)
    skipped            (decided together with a later step, which is the one sent)
"""

DUNNING_STATUSES = ("pending", "sending", "sent", "failed", "skipped", "cancelled")

DUNNING_OUTBOX_DDL = (
    f"""
    CREATE TABLE IF NOT EXISTS dunning_messages (
        invoice_id TEXT NOT NULL,
        step TEXT NOT NULL,                  -- reminder_<day> | final_notice
        step_day INTEGER NOT NULL,           -- days after the due date it was due on
        number TEXT NOT NULL,                -- the invoice's number
        customer_id TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_due TEXT NOT NULL,            -- owed when decided, the currency's minor digits
        days_overdue INTEGER NOT NULL,       -- when decided
        recipients TEXT NOT NULL,            -- JSON list of addresses ([] when skipped)
        message_id TEXT NOT NULL UNIQUE,     -- <...>: the same on every attempt, ever
        sender TEXT NOT NULL,                -- the envelope sender: the bare address of `from`
        subject TEXT NOT NULL,               -- empty when skipped
        message BLOB,                        -- the RFC 5322 bytes sent (NULL when skipped)
        status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in DUNNING_STATUSES)})),
        attempts INTEGER NOT NULL DEFAULT 0, -- SMTP transactions started for it
        last_error TEXT,
        decided_at TEXT NOT NULL,
        sending_at TEXT,                     -- the last attempt's start
        sent_at TEXT,
        closed_at TEXT,                      -- failed, skipped or cancelled
        close_reason TEXT,
        PRIMARY KEY (invoice_id, step)
    )
    """,
    "CREATE INDEX IF NOT EXISTS dunning_by_status ON dunning_messages (status, decided_at)",
)
