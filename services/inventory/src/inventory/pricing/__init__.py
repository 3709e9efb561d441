"""HQ price distribution: store groups, store override rules, scheduled price changes."""
