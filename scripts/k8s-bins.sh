#!/usr/bin/env bash
# Builds the real control plane the Kubernetes tests run against, from Go modules:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake nodes) and helm.
# Binaries are cached in .cache/k8s/bin (git-ignored), keyed by version, so only the first run pays.
# Usage: scripts/k8s-bins.sh  -> prints the bin directory on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}

root="$PWD/.cache/k8s"
bin="$root/bin"
stamp="$bin/.versions"
want="k8s=$K8S_VERSION etcd=$ETCD_VERSION kwok=$KWOK_VERSION helm=$HELM_VERSION"
# Kubernetes binaries built without version stamps report v0.0.0-master, which helm refuses (chart kubeVersion).
kube_versioned() { "$bin/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $K8S_VERSION"; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && kube_versioned; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { echo "k8s-bins: go not found" >&2; exit 3; }
mkdir -p "$bin"
# One build at a time (test runs call this script too); whoever waited finds the work done.
exec 9>"$root/build.lock"
flock 9
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && kube_versioned; then
  echo "$bin"
  exit 0
fi
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -trimpath"
export CGO_ENABLED=0

log() { echo "k8s-bins: $*" >&2; }

# k8s.io/kubernetes replaces its staging modules with local paths; a wrapper module points
# each of them at the published k8s.io/<name> v0.<minor>.<patch> instead.
build_kube() {
  local dir="$root/kube-$K8S_VERSION" staging="v0${K8S_VERSION#v1}"
  mkdir -p "$dir"
  local mod
  # Through go itself, so GOPROXY/GONOSUMDB settings apply as for every other module.
  local gomod
  gomod=$(cd "$root" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  mod=$(cat "$gomod")
  {
    echo "module smelterfleet.dev/k8s-bins"
    echo
    echo "go $(echo "$mod" | awk '$1=="go"{print $2; exit}')"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    echo "$mod" | awk -v v="$staging" '$2=="=>" && $3 ~ /^\.\/staging/ && $1 !~ /sample-/ {print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
EOF
  (cd "$dir" && go mod tidy)
  local minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  local ldflags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    log "building $cmd $K8S_VERSION"
    # Built aside, then renamed: a control plane running the old binary keeps it.
    (cd "$dir" && go build -tags tools -ldflags "$ldflags" -o "$bin/$cmd.new" "k8s.io/kubernetes/cmd/$cmd")
    mv -f "$bin/$cmd.new" "$bin/$cmd"
  done
}

# go install pkg@version refuses modules with replace directives (etcd and kwok have them),
# so each tool is built from a one-file wrapper module.
build_wrapped() {
  local name=$1 module=$2 version=$3 pkg=$4
  local dir="$root/$name-$version"
  log "building $name $version"
  mkdir -p "$dir"
  printf 'module smelterfleet.dev/k8s-bins/%s\n\ngo 1.24\n\nrequire %s %s\n' "$name" "$module" "$version" >"$dir/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$dir/tools.go"
  (cd "$dir" && go mod tidy && go build -tags tools -o "$bin/$name" "$pkg")
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$want" ]; then rm -rf "$bin"; mkdir -p "$bin"; fi
[ -x "$bin/etcd" ] || build_wrapped etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
[ -x "$bin/kwok" ] || build_wrapped kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
[ -x "$bin/helm" ] || build_wrapped helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
{ [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-scheduler" ] && [ -x "$bin/kube-controller-manager" ] && kube_versioned; } || build_kube

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kwok helm; do
  [ -x "$bin/$b" ] || { log "missing $bin/$b after build"; exit 1; }
done
echo "$want" >"$stamp"
echo "$bin"
