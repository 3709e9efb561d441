"""Batch verification of member data (批量校验), typically after an import."""
