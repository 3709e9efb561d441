"""One-time verification codes sent to phones."""
