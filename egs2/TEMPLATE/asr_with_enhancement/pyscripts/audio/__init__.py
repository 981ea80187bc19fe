"""Audio data preparation (format_wav_scp)."""
