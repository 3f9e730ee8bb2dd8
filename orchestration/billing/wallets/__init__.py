"""Prepaid credits (SPEC 7): grants, the drawing order, credit-priced usage, top-ups, expiry.

- `grants.py`: what a grant is, the drawing order, validity windows and their shares;
- `draw.py`: one customer's draws on one close's invoices (pure arithmetic, Decimal only);
- `close.py`: a close month's wallet entries from the grants, earlier entries and invoices;
- `load.py`: reading those inputs from the warehouse (the dbt Python models call it).
"""
