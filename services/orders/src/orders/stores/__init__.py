"""The local replica of identity's store statuses: a locked store takes no new writes."""
