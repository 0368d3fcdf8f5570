#!/usr/bin/env bash
# install-tools.sh TOOL... — make the named tools available, installing what is
# missing: Debian packages when running as root, Go builds otherwise. Built
# binaries are cached outside the clone, in ${BACKUPD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/backupd/bin},
# so every clone on a machine (CI's clean one too) builds them once. Put that
# directory on PATH; the Makefile does.
#
# Tools: staticcheck, restic, borg, kopia, minio, prometheus (with promtool),
# alertmanager (Debian's binary is prometheus-alertmanager), etcd,
# kube-apiserver, helm, controller-gen.
#
# First builds on a 2-core machine: minio about 5 minutes (1.5 GB of RAM),
# kube-apiserver about 9 minutes (2.2 GB), etcd about 2, kopia about 2, helm
# about 2, staticcheck under a minute, restic under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${BACKUPD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/backupd/bin}"
mkdir -p "$CACHE"
export PATH="$CACHE:$PATH"

apt_updated=""
apt_install() {
	if [ "$(id -u)" != 0 ]; then
		echo "install-tools: $1 is missing and installing Debian packages needs root" >&2
		return 1
	fi
	if [ -z "$apt_updated" ]; then
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# go_tool NAME MODULE@VERSION: build a Go tool into the cache.
go_tool() {
	local name=$1 pkg=$2
	echo "install-tools: building $name from $pkg" >&2
	GOBIN="$CACHE" GOFLAGS=-mod=mod go install "$pkg"
}

# go_tool_module NAME MODULE VERSION PKG: build from a scratch module with a
# tool line (for modules whose 'go install' is refused by the proxy).
go_tool_module() {
	local name=$1 mod=$2 ver=$3 pkg=$4
	local dir
	dir=$(mktemp -d)
	(
		cd "$dir"
		go mod init scratch >/dev/null 2>&1
		go get "$mod@$ver" >/dev/null
		GOBIN="$CACHE" go install "$pkg"
	)
	rm -rf "$dir"
}

# go_build_module NAME MODULE VERSION PKG [REPLACE...]: build PKG of MODULE
# into the cache as NAME, from a scratch module with the given replace
# directives (for binaries whose package name is not the tool's name, or whose
# module needs its staging modules replaced by published versions).
go_build_module() {
	local name=$1 mod=$2 ver=$3 pkg=$4
	shift 4
	local dir
	dir=$(mktemp -d)
	echo "install-tools: building $name from $mod@$ver" >&2
	(
		cd "$dir"
		go mod init scratch >/dev/null 2>&1
		for r in "$@"; do go mod edit -replace "$r"; done
		go get "$pkg@$ver" >/dev/null
		go build -o "$CACHE/$name" "$pkg"
	)
	rm -rf "$dir"
}

# kube_apiserver_build: k8s.io/kubernetes requires its staging modules at
# v0.0.0 and replaces them with directories of its own tree; a scratch module
# replaces each with the published v0.N.M of the same release.
kube_apiserver_build() {
	local ver=v1.37.2 staging=v0.37.2 gomod
	gomod=$(go mod download -json "k8s.io/kubernetes@$ver" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
	local replaces=()
	while read -r m; do
		replaces+=("$m=$m@$staging")
	done < <(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
	go_build_module kube-apiserver k8s.io/kubernetes "$ver" k8s.io/kubernetes/cmd/kube-apiserver "${replaces[@]}"
}

for tool in "$@"; do
	case "$tool" in
	staticcheck)
		command -v staticcheck >/dev/null || go_tool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
		;;
	restic)
		# The current release, not Debian's 0.14 (2022): the benchmarks
		# compare against what restic users run today.
		[ -x "$CACHE/restic" ] || go_build_module restic github.com/restic/restic v0.18.1 github.com/restic/restic/cmd/restic
		;;
	borg)
		command -v borg >/dev/null || apt_install borgbackup
		;;
	prometheus)
		command -v prometheus >/dev/null && command -v promtool >/dev/null || apt_install prometheus
		;;
	alertmanager)
		command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null || apt_install prometheus-alertmanager
		;;
	kopia)
		command -v kopia >/dev/null || go_tool_module kopia github.com/kopia/kopia v0.23.1 github.com/kopia/kopia
		;;
	minio)
		# The server is only run by the tests and the bench, never linked.
		command -v minio >/dev/null || go_tool_module minio github.com/minio/minio v0.0.0-20260212201848-7aac2a2c5b7c github.com/minio/minio
		;;
	etcd)
		command -v etcd >/dev/null || go_build_module etcd go.etcd.io/etcd/server/v3 v3.7.3 go.etcd.io/etcd/server/v3
		;;
	kube-apiserver)
		command -v kube-apiserver >/dev/null || kube_apiserver_build
		;;
	controller-gen)
		# Generates the CRDs and deepcopy code of backupd/kube/api (make crds).
		command -v controller-gen >/dev/null || go_build_module controller-gen sigs.k8s.io/controller-tools v0.23.0 sigs.k8s.io/controller-tools/cmd/controller-gen
		;;
	helm)
		command -v helm >/dev/null || go_build_module helm helm.sh/helm/v3 v3.22.0 helm.sh/helm/v3/cmd/helm
		;;
	*)
		echo "install-tools: unknown tool $tool" >&2
		exit 2
		;;
	esac
done
