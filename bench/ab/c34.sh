# A ring chunk may take 3/4 of the ring (3/5 on main).
set -e
sed -i 's|unsigned(ring_bytes) \* 3u / 5u|unsigned(ring_bytes) * 3u / 4u|' cuda/weight_ring.cuh
grep -q 'unsigned(ring_bytes) \* 3u / 4u' cuda/weight_ring.cuh
