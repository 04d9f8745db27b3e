# tkf with the values in the layout of a coalesced poll (id = thread + j · threads; tkf's contiguous values per thread
# made the logits' poll uncoalesced), candidate positions from per-(j, warp) ballot counts. (bench/ab/README.md)
set -e
python3 bench/ab/apply_diff.py bench/ab/tkf2.diff
