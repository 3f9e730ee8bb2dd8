"""`meterbook demo`: a seeded, realistic workspace for an AI product, closed end to end."""
