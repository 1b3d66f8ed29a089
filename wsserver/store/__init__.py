"""Event stores: the durable, sequenced channel logs (embedded SQLite, Redis Streams)."""
