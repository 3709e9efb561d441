"""The local replica of identity's stores: which merchant owns a store and whether it is open."""
