#!/usr/bin/env bash
# Run HERE (Debian 12 dev machine, with network), once: downloads the -dev and runtime .deb files that the
# GPU machine lacks into .debs/ (ignored by git via .git/info/exclude; ~4 MB). The device recipe,
# scripts/device_build_and_test.sh, unpacks them into a private prefix there; carry ".debs" with the run tool.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.debs/' .git/info/exclude 2>/dev/null || echo '/.debs/' >> .git/info/exclude
mkdir -p .debs
cd .debs
apt-get download \
  libfmt9 libfmt-dev nlohmann-json3-dev libcli11-dev doctest-dev \
  libsndfile1 libsndfile1-dev libflac12 libogg0 libvorbis0a libvorbisenc2 libopus0 libmpg123-0 libmp3lame0 \
  libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 libpcre2-dev libutf8proc2 libutf8proc-dev \
  libsamplerate0 libsamplerate0-dev \
  pkgconf pkgconf-bin libpkgconf3
ls -1 | wc -l | xargs echo "device_fetch_debs: .debs files:" >&2
