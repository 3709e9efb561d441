"""Business days and the short order numbers per store and business day."""
