"""Muster kernel: settings, logging, errors, auth, audit, storage, gateway and HTTP plumbing."""
