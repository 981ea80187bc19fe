"""sclite-compatible ASR scoring and result tables."""
