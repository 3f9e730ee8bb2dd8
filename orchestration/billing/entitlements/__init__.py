"""Entitlements (SPEC 9): what each customer may use in its current period, and how much is
left, published as a snapshot file that `meterbook serve` answers from."""
