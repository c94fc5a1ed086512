"""What every stage shares: configuration helpers, atomic artifacts, the runtime (devices,
threads), errors, secrets, locks and the command-line glue."""
