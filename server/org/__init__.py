"""Organisation and accounts: the department tree, users and their devices (the back office)."""
