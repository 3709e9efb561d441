"""The local replica of inventory's catalog, so that checkout prices lines while inventory
is down."""
