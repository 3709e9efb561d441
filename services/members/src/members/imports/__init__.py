"""Import of members from CSV or XLSX files, and export of the member list."""
