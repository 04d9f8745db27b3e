# the fine phase trace (QTTS_FINE_TRACE: thread 0's cycles per phase segment, per-phase ring waits); its code slows the untraced kernels, so compare its segments, not its times
sed -i 's/\(option(QTTS_FINE_TRACE "[^"]*"\) OFF)/\1 ON)/' CMakeLists.txt
grep -q 'QTTS_FINE_TRACE "[^"]*" ON)' CMakeLists.txt
