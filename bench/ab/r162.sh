# The predictor's weight ring capped at 162 KB (134 on main).
set -e
sed -i 's/kPredictorRingBytes = 134 << 10/kPredictorRingBytes = 162 << 10/' cuda/weight_ring.cuh
grep -q 'kPredictorRingBytes = 162 << 10' cuda/weight_ring.cuh
