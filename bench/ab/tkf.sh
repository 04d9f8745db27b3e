# The predictor's passes poll the logits straight into registers and draw with the staged top-k path (default rules,
# no repetition penalty); block_sample runs where it hands over. (bench/ab/README.md)
set -e
python3 bench/ab/apply_diff.py bench/ab/tkf.diff
