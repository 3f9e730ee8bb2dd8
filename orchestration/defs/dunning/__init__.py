"""Dunning in Dagster (SPEC 11): reminders for overdue invoices, decided and sent daily."""
