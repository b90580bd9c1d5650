#!/usr/bin/env bash
# Refresh the monitor's vendored Apache ECharts from the npm registry (run by hand; the result is committed).
# Usage: scripts/vendor_echarts.sh [version]   (default: the version in plugins/cdyb_jxc/ui/static/echarts/VERSION)
# npm checks the tarball against the registry's integrity hash; the hash is recorded beside the files.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dest="$here/plugins/cdyb_jxc/ui/static/echarts"
version="${1:-$(sed -n 's/^version=//p' "$dest/VERSION")}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "echarts@$version" >/dev/null && tar xzf "echarts-$version.tgz")
integrity="$(cd "$work" && npm view "echarts@$version" dist.integrity)"
mkdir -p "$dest/licenses"
cp "$work/package/dist/echarts.common.min.js" "$dest/"
cp "$work/package/LICENSE" "$work/package/NOTICE" "$dest/"
cp "$work/package/licenses/"* "$dest/licenses/"
printf 'version=%s\nintegrity=%s\nfile=dist/echarts.common.min.js\nsha256=%s\n' "$version" "$integrity" \
  "$(sha256sum "$dest/echarts.common.min.js" | cut -d' ' -f1)" >"$dest/VERSION"
echo "vendored echarts $version into $dest"
