#!/usr/bin/env bash
# Refresh the NHS.UK frontend assets that services/web serves itself (NHS networks may reach no CDN).
# Keep the version in step with the nhsuk-frontend-jinja macros in pyproject.toml (its README pairs them).
# The @font-face rules are dropped: they load Frutiger from assets.nhs.uk; the NHS font stack falls back
# to Arial, which the service manual allows.
set -euo pipefail
version="${1:-10.6.1}"
here="$(cd "$(dirname "$0")/.." && pwd)"
target="$here/services/web/static/nhsuk"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "nhsuk-frontend@$version" >/dev/null && tar xzf "nhsuk-frontend-$version.tgz")
dist="$work/package/dist/nhsuk"
rm -rf "$target" && mkdir -p "$target/assets"
python3 - "$dist/nhsuk-frontend.min.css" "$target/nhsuk-frontend.min.css" <<'PY'
import re, sys
css = open(sys.argv[1]).read()
css = re.sub(r"@font-face\{[^}]*assets\.nhs\.uk[^}]*\}", "", css)
css = re.sub(r"/\*# sourceMappingURL=.*?\*/", "", css)
assert "assets.nhs.uk" not in css and "https://" not in css, "the stylesheet still reaches out"
open(sys.argv[2], "w").write(css)
PY
sed 's|//# sourceMappingURL=.*||' "$dist/nhsuk-frontend.min.js" > "$target/nhsuk-frontend.min.js"
cp -r "$dist/assets/images" "$dist/assets/manifest.json" "$target/assets/"
rm -f "$target/assets/images/nhsuk-opengraph-image.png"
echo "$version" > "$target/VERSION"
echo "NHS.UK frontend $version in $target"
