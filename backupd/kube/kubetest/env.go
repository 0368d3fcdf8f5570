package kubetest

import (
	"github.com/meshbackup/backupd/internal/tools"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// CRDDir is where the chart keeps backupd's CRDs, relative to the
// repository root.
const CRDDir = "deploy/helm/backupd/crds"

// Env is a running etcd and kube-apiserver with backupd's CRDs installed.
type Env struct {
	// Config reaches the apiserver as a member of system:masters.
	Config *rest.Config
	// Clientset is a typed client for the built-in kinds.
	Clientset kubernetes.Interface
	// Dynamic is a client for any kind, the CRDs' too.
	Dynamic dynamic.Interface
	// Mapper maps kinds to resources by discovery; Apply resets it after
	// installing a CRD.
	Mapper *restmapper.DeferredDiscoveryRESTMapper
	// RepoRoot is the repository's root directory.
	RepoRoot string
}

// Start runs etcd and kube-apiserver on 127.0.0.1 for the test, installs
// the CRDs of deploy/helm/backupd/crds and waits for them to be served; it
// stops both in t.Cleanup. Without the binaries it fails the test naming
// the install script; with -short it skips the test.
func Start(t testing.TB) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("kube-apiserver test skipped in -short mode")
	}
	apiserver, err := tools.Find("kube-apiserver")
	if err != nil {
		t.Fatalf("%v (run ./scripts/install-tools.sh etcd kube-apiserver)", err)
	}
	etcd, err := tools.Find("etcd")
	if err != nil {
		t.Fatalf("%v (run ./scripts/install-tools.sh etcd kube-apiserver)", err)
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// controller-runtime logs through a package-level delegating logger
	// that complains when never set; the test has nothing to say there.
	ctrllog.SetLogger(logr.Discard())

	te := &envtest.Environment{
		BinaryAssetsDirectory: filepath.Dir(apiserver),
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths:              []string{filepath.Join(root, CRDDir)},
			ErrorIfPathMissing: true,
		},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	te.ControlPlane.Etcd = &envtest.Etcd{Path: etcd}
	te.ControlPlane.GetAPIServer().Path = apiserver
	cfg, err := te.Start()
	if err != nil {
		// A partly started control plane still has processes to stop.
		_ = te.Stop()
		t.Fatalf("start etcd and kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := te.Stop(); err != nil {
			t.Errorf("stop etcd and kube-apiserver: %v", err)
		}
	})
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatalf("discovery client: %v", err)
	}
	return &Env{
		Config:    cfg,
		Clientset: cs,
		Dynamic:   dyn,
		Mapper:    restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		RepoRoot:  root,
	}
}

// ConfigAs returns a copy of e.Config that impersonates the ServiceAccount
// namespace/name (with its groups), so a test can check that what an agent
// does is allowed by the chart's RBAC alone.
func (e *Env) ConfigAs(namespace, name string) *rest.Config {
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	return cfg
}
