"""Identity: passwords, tokens, devices, login throttling."""
