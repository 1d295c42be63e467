"""HTTP plumbing: the typed route registry with its OpenAPI document, and middleware."""
