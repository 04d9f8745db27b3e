# control for r160c16: the predictor's 16-row chunks in its 134 KB ring
sed -i 's/constexpr int kTalkerChunkRows = 48, kPredictorChunkRows = 48;/constexpr int kTalkerChunkRows = 48, kPredictorChunkRows = 16;/' cuda/weight_ring.cuh
grep -q 'kPredictorChunkRows = 16;' cuda/weight_ring.cuh
