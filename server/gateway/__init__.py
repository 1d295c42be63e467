"""The Socket.IO gateway: authenticated connections and validated events with error acks."""
