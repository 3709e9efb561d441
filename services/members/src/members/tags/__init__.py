"""Member tags: manual tags and rule-based tags, kept together in the member's ``tags``."""
