// Package kubetest runs a real kube-apiserver for tests: Start launches etcd
// and kube-apiserver on 127.0.0.1 (free ports) through controller-runtime's
// envtest, installs backupd's CRDs from deploy/helm/backupd/crds, and stops
// both in t.Cleanup. Env.Apply does server-side apply of multi-document YAML
// the way `kubectl apply --server-side` does, waiting for a CRD to be
// established before the objects of its kinds are applied.
//
// There is no kubelet, controller-manager or scheduler: pods stay Pending,
// nothing garbage-collects, no PVC gets bound unless a test binds it. A test
// plays those parts through the API.
//
// The binaries are found on PATH or in the tool cache
// ${BACKUPD_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/backupd/bin}; when one is
// missing the test fails naming ./scripts/install-tools.sh (in -short mode
// it is skipped).
package kubetest
