"""Review: the states a record goes through, the queue with its leases,
consensus, decisions and reviewer statistics (DESIGN.md, "Validation")."""
