# Corpus locations for the RATS channel A recipe. Set the ones your input mode needs
# (local/data.sh --mode pairs|ldc); an environment variable of the same name wins.

# Mode "pairs": <RATS_CHA_PAIRS>/{train,valid,test}/{noisy,clean}/<uttid>.wav + <split>/text
RATS_CHA_PAIRS=${RATS_CHA_PAIRS:-}
# Mode "ldc": the RATS SAD release (LDC2015S02) root, holding data/ and docs/
RATS_LDC=${RATS_LDC:-}
# Mode "ldc": Fisher English transcripts (LDC2004T19, LDC2005T19), searched for fe_03_*.txt
FISHER_TRANS=${FISHER_TRANS:-}
