# fine trace + d2 (the segments of the down split)
bash bench/ab/fine.sh
bash bench/ab/d2.sh
