"""Sign-in, tokens and signing keys."""
