"""Bulk import of products from CSV or Excel, and export of the catalog."""
