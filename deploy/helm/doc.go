// Package helm holds the tests of the Helm chart in deploy/helm/backupd:
// helm lint, helm template with default values and with every optional
// feature, and every rendered object (CRDs first) applied with server-side
// apply to a real kube-apiserver (backupd/kube/kubetest), so that
// `helm install` of the chart would work. It has no code of its own.
package helm
