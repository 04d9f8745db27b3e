# tkf and a16 together (their gains, if any, should add: different phases of a pass).
set -e
bash bench/ab/tkf.sh
bash bench/ab/a16.sh
