"""The price backtest: re-rated months under the current and a candidate catalog, compared."""
