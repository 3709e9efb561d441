"""Sales reports over business days, with the filters of the order list."""
