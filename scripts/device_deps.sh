# Sourced ON THE GPU MACHINE by device_build_and_test.sh and device_ab.sh: unpacks .debs/ (made by
# scripts/device_fetch_debs.sh, carried with the run tool) into the private prefix $deps once, with its pkg-config
# files relocated there, so that either script may run first in a call.
deps=/tmp/qtts-deps
lib="$deps/usr/lib/x86_64-linux-gnu"
[ -d .debs ] || { echo "no .debs/: run scripts/device_fetch_debs.sh here and carry .debs" >&2; exit 2; }
if [ ! -d "$deps/usr" ]; then
  mkdir -p "$deps"
  for f in .debs/*.deb; do dpkg-deb -x "$f" "$deps" || { mkdir -p /tmp/qtts-ar && (cd /tmp/qtts-ar && ar x "$OLDPWD/$f" && tar -xf data.tar.* -C "$deps"); }; done
  # Relocate the pkg-config files; drop static-only requirements whose .pc files are not carried.
  for pc in "$lib"/pkgconfig/*.pc "$deps"/usr/share/pkgconfig/*.pc; do
    sed -i -e "s|^prefix=/usr\$|prefix=$deps/usr|" -e '/^Requires.private/d' "$pc"
  done
fi
