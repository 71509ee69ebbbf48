#!/usr/bin/env bash
# Regenerate the Go stubs of protos/tarry/v1 into OUTDIR (default: clients/go, which gives
# clients/go/tarry/v1/*.go). A check generates into a temporary directory and diffs:
#
#   clients/go/gen.sh "$(mktemp -d)"
#
# Needs only Go and npm: the plugins are built at pinned versions into clients/go/.bin, and
# buf is the root package.json's (installed by `npm ci` when missing).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$(mkdir -p "${1:-$here}" && cd "${1:-$here}" && pwd)"

# Pinned: the generated code names these versions in its header, so they decide the bytes.
# protoc-gen-go comes from the same module as the protobuf runtime in go.mod.
PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

bin="$here/.bin"
mkdir -p "$bin"
# `go install` puts whatever it builds into GOBIN; a stamp per version rebuilds on a bump.
for tool in "$PROTOC_GEN_GO" "$PROTOC_GEN_GO_GRPC"; do
  name="${tool%@*}"; name="${name##*/}"
  stamp="$bin/.$name@${tool##*@}"
  if [ ! -x "$bin/$name" ] || [ ! -e "$stamp" ]; then
    GOBIN="$bin" go install "$tool"
    rm -f "$bin/.$name@"*; touch "$stamp"
  fi
done

buf="$root/node_modules/.bin/buf"
if [ ! -x "$buf" ]; then
  (cd "$root" && npm ci --silent --no-audit --no-fund)
fi

# buf resolves the template's plugin paths and the module in buf.yaml from the root.
cd "$root"
"$buf" generate --template clients/go/buf.gen.yaml -o "$out"
