"""The sync protocol as logic: push, pull, cursors, conflicts, idempotency (issue #3)."""
