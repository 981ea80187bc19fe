"""Recipe utilities (Kaldi/ESPnet-style data-dir, scp and job tools), re-implemented in Python."""
