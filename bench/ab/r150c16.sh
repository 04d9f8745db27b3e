# the predictor's ring at 150 KB with 16-row chunks (qkv 2, gate/up 3 chunks, tile-aligned): scripts/ring_model.py
# --scan 150:150 --split qkv=2 --split gu=3 gives every chunk >= 3 back, where 134 KB with 48-row chunks has 2
sed -i -e 's/constexpr int kPredictorRingBytes = 134 << 10;/constexpr int kPredictorRingBytes = 150 << 10;/' \
  -e 's/constexpr int kTalkerChunkRows = 48, kPredictorChunkRows = 48;/constexpr int kTalkerChunkRows = 48, kPredictorChunkRows = 16;/' cuda/weight_ring.cuh
grep -q 'kPredictorRingBytes = 150 << 10' cuda/weight_ring.cuh && grep -q 'kPredictorChunkRows = 16;' cuda/weight_ring.cuh
