"""The local replica of orders that payments needs to accept a payment while orders is down."""
