"""The members replica: which member ids exist, per merchant."""
