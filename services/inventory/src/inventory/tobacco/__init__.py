"""Tobacco: daily sales and stock report and the compliance log."""
