"""Credit notes (SPEC 11): `plan.py` decides what a credit note credits (pure), `issue.py`
numbers it and keeps it in the ledger, `document.py` renders it. The Stripe push is
integrations/stripe/credit_notes.py; the Dagster job orchestration/defs/credit_notes/."""
