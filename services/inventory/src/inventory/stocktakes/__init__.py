"""Stocktaking sessions: frozen book quantities, counts from many devices, approval."""
