"""Member levels: definitions per merchant, lifetime figures, moving members up."""
