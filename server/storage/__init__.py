"""Storage ports (typing.Protocol) and their adapters: sqlite/ (embedded) and mongo/ (production)."""
