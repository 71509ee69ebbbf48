#!/usr/bin/env bash
# Regenerates the TypeScript protobuf code into OUTDIR (default src/gen, relative to
# clients/typescript), replacing what is there. A check generates into a temporary directory
# and diffs it against src/gen.
#
# Needs `npm ci` at the repository root (buf) and in clients/typescript (ts-proto).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
buf="$root/node_modules/.bin/buf"
plugin="$here/node_modules/.bin/protoc-gen-ts_proto"
outdir="${1:-src/gen}"
case "$outdir" in /*) ;; *) outdir="$PWD/$outdir" ;; esac

[ -x "$buf" ] || { echo "gen.sh: $buf is missing: run npm ci at the repository root" >&2; exit 1; }
[ -x "$plugin" ] || { echo "gen.sh: $plugin is missing: run npm ci in clients/typescript" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The Tarry protos and the google.rpc ones live in two trees; buf wants one module, and one
# outside the repository's own buf.yaml workspace (which covers protos/ only).
mkdir -p "$work/module" "$work/out"
cp -R "$root/protos/." "$work/module/"
cp -R "$here/protos/." "$work/module/"
find "$work/module" -type f ! -name '*.proto' -delete
printf 'version: v2\n' > "$work/module/buf.yaml"

# The template names the plugin relative to clients/typescript and writes to src/gen; -o puts
# that under the scratch directory instead.
(cd "$here" && "$buf" generate "$work/module" --template buf.gen.yaml -o "$work/out")

rm -rf "$outdir"
mkdir -p "$outdir"
cp -R "$work/out/src/gen/." "$outdir/"
