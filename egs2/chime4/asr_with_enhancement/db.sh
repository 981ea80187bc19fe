# Corpus locations (ESPnet's db.sh convention); an environment variable of the same name wins.

# The CHiME-4 package's top directory, literally called CHiME3 (holds data/audio/16kHz/isolated).
CHIME4=${CHIME4:-}
# The CHiME4_diff package's annotations (et05_{real,simu}_1ch_track.list):
# .../CHiME4_diff/CHiME3/data/annotations. Needed unless those lists are in ${CHIME4}/data/annotations.
CHIME4_EXTRA_ANNOTATIONS=${CHIME4_EXTRA_ANNOTATIONS:-}
