package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/kube/agent"
	"github.com/meshbackup/backupd/backupd/kube/api/v1alpha1"
	"github.com/meshbackup/backupd/backupd/kube/kubetest"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/bench/workload"
	"github.com/meshbackup/backupd/collectors"
)

const (
	testNS      = "shop"
	agentNS     = "backupd"
	cluster     = "test"
	repoPass    = "correct horse battery staple"
	workloadOpt = 0.002 // workload scale: a few hundred KiB a volume
)

var wlOpt = workload.Options{Proxies: 1, ConsulServers: 1, Scale: workloadOpt, Seed: 7}

// kubeletStandIn plays the kubelet of one node, openly: it registers the
// node, binds PVCs to CSI PVs, creates pods on the node and marks them
// Running through the API, and lays out the pod volume directories on disk
// where a kubelet would mount them (pods/<uid>/volumes/...), filled by the
// workload generator.
type kubeletStandIn struct {
	t    *testing.T
	cs   kubernetes.Interface
	node string
	dir  string // the kubelet's root directory
	// wl gives the workload options of a pod's i-th volume; nil:
	// volumeOptions.
	wl func(pod string, i int) workload.Options
}

func newKubeletStandIn(t *testing.T, ctx context.Context, cs kubernetes.Interface, node string) *kubeletStandIn {
	t.Helper()
	k := &kubeletStandIn{t: t, cs: cs, node: node, dir: t.TempDir()}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node %s: %v", node, err)
	}
	return k
}

// provision creates a CSI PV and a PVC bound to it.
func (k *kubeletStandIn) provision(ctx context.Context, ns, claim string, ann map[string]string) {
	k.t.Helper()
	pvName := "pv-" + ns + "-" + claim
	size := resource.MustParse("1Gi")
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pvName}, Spec: corev1.PersistentVolumeSpec{
		Capacity:    corev1.ResourceList{corev1.ResourceStorage: size},
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
			Driver: "csi.test.example", VolumeHandle: pvName}},
		ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: claim},
	}}
	if _, err := k.cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		k.t.Fatalf("create PV: %v", err)
	}
	empty := ""
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: claim, Namespace: ns, Annotations: ann},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			StorageClassName: &empty, VolumeName: pvName}}
	got, err := k.cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatalf("create PVC: %v", err)
	}
	got.Status.Phase = corev1.ClaimBound
	if _, err := k.cs.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		k.t.Fatalf("bind PVC: %v", err)
	}
}

// runPod creates the pod on this node, lays out its volumes (each PVC's
// CSI mount and each emptyDir filled by the workload generator) and marks
// it Running. It returns the directories by volume name.
func (k *kubeletStandIn) runPod(ctx context.Context, pod *corev1.Pod) map[string]string {
	k.t.Helper()
	return k.runPodWith(ctx, pod, nil)
}

// runPodWith is runPod where the volumes named in existing are not
// generated but mounted from the given directories (moved into place): a
// PVC's file system that was mounted on another node before.
func (k *kubeletStandIn) runPodWith(ctx context.Context, pod *corev1.Pod, existing map[string]string) map[string]string {
	k.t.Helper()
	pod.Spec.NodeName = k.node
	pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}
	got, err := k.cs.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		k.t.Fatalf("create pod: %v", err)
	}
	dirs := map[string]string{}
	vols := filepath.Join(k.dir, "pods", string(got.UID), "volumes")
	for i, v := range got.Spec.Volumes {
		var d string
		switch {
		case v.PersistentVolumeClaim != nil:
			d = filepath.Join(vols, "kubernetes.io~csi", "pv-"+got.Namespace+"-"+v.PersistentVolumeClaim.ClaimName, "mount")
		case v.EmptyDir != nil:
			d = filepath.Join(vols, "kubernetes.io~empty-dir", v.Name)
		default:
			d = filepath.Join(vols, "kubernetes.io~secret", v.Name)
		}
		if from, ok := existing[v.Name]; ok {
			if err := os.MkdirAll(filepath.Dir(d), 0o750); err != nil {
				k.t.Fatal(err)
			}
			if err := os.Rename(from, d); err != nil {
				k.t.Fatalf("mount volume %s: %v", v.Name, err)
			}
			dirs[v.Name] = d
			continue
		}
		wl := volumeOptions
		if k.wl != nil {
			wl = k.wl
		}
		if err := workload.Generate(d, wl(got.Name, i)); err != nil {
			k.t.Fatalf("lay out volume %s: %v", v.Name, err)
		}
		dirs[v.Name] = d
	}
	got.Status.Phase = corev1.PodRunning
	if _, err := k.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		k.t.Fatalf("pod status: %v", err)
	}
	return dirs
}

// deletePod deletes the pod at once (no kubelet to confirm a graceful
// deletion) and unmounts its volumes, as the kubelet would.
func (k *kubeletStandIn) deletePod(ctx context.Context, ns, name string) {
	k.t.Helper()
	k.deletePodKeeping(ctx, ns, name, nil)
}

// deletePodKeeping is deletePod where the PVC volumes named in keep are
// unmounted, not destroyed: their file systems are moved to new
// directories, returned by volume name, to be mounted on another node
// (runPodWith).
func (k *kubeletStandIn) deletePodKeeping(ctx context.Context, ns, name string, keep []string) map[string]string {
	k.t.Helper()
	p, err := k.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		k.t.Fatal(err)
	}
	zero := int64(0)
	if err := k.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		k.t.Fatalf("delete pod: %v", err)
	}
	kept := map[string]string{}
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim == nil || !slices.Contains(keep, v.Name) {
			continue
		}
		from := filepath.Join(k.dir, "pods", string(p.UID), "volumes", "kubernetes.io~csi", "pv-"+ns+"-"+v.PersistentVolumeClaim.ClaimName, "mount")
		to := filepath.Join(k.t.TempDir(), "detached")
		if err := os.Rename(from, to); err != nil {
			k.t.Fatalf("unmount volume %s: %v", v.Name, err)
		}
		kept[v.Name] = to
	}
	if err := os.RemoveAll(filepath.Join(k.dir, "pods", string(p.UID))); err != nil {
		k.t.Fatal(err)
	}
	return kept
}

// volumeOptions are the workload options of a pod's i-th volume.
func volumeOptions(pod string, i int) workload.Options {
	opt := wlOpt
	opt.Seed = uint64(len(pod)*100 + i)
	return opt
}

func pvcVolume(name, claim string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}
}

// meshPod is a pod as a mesh's injector leaves it: the workload's PVC,
// the proxy's emptyDir and token, a secret.
func meshPod(name string, ann map[string]string, claim string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Annotations: ann},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{
			pvcVolume("data", claim),
			{Name: "istio-envoy", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "certs"}}},
		}}}
}

var (
	istio   = map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}
	linkerd = map[string]string{"linkerd.io/proxy-version": "stable-2.14.10"}
	consul  = map[string]string{"consul.hashicorp.com/connect-inject-status": "injected"}
)

type runningAgent struct {
	a      *agent.Agent
	reg    *collectors.Registry
	rec    *recorder
	cancel context.CancelFunc
	done   chan error
}

// recorder keeps the records of the runs the daemon finished, and passes
// them on.
type recorder struct {
	daemon.Observer
	mu       sync.Mutex
	finished []results.Record
}

func (r *recorder) RunFinished(rec results.Record) {
	r.Observer.RunFinished(rec)
	r.mu.Lock()
	r.finished = append(r.finished, rec)
	r.mu.Unlock()
}

// records returns the finished runs of a policy and kind, oldest first.
func (r *recorder) records(policy string, kind results.Kind) []results.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []results.Record
	for _, rec := range r.finished {
		if rec.Policy == policy && rec.Kind == kind {
			out = append(out, rec)
		}
	}
	return out
}

// startAgent runs an agent for the stand-in's node; mods change its
// options before it starts.
// childEnv makes this test binary a daemon's backup child
// (daemon.ServeChild) instead of running the tests.
const childEnv = "BACKUPD_AGENT_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		err := daemon.ServeChild(ctx, os.Stdin, os.Stdout, daemon.ChildOptions{
			Logger: func(l slog.Level) *slog.Logger {
				return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
			},
		})
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "backup child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// isolated makes an agent back up in children that are this test binary
// (their storage operations counted in its registry).
func isolated(t *testing.T) func(*agent.Options) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(childEnv, "1")
	return func(o *agent.Options) { o.Daemon.Isolate = &daemon.Isolation{Path: exe, Args: []string{exe}} }
}

func startAgent(t *testing.T, env *kubetest.Env, k *kubeletStandIn, stateDir string, mods ...func(*agent.Options)) *runningAgent {
	t.Helper()
	reg, runs, storage, err := collectors.NewRegistry("test")
	if err != nil {
		t.Fatal(err)
	}
	vm, err := collectors.NewVolumes(reg)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t, k.node}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rec := &recorder{Observer: runs}
	opt := agent.Options{
		Clientset: env.Clientset, Dynamic: env.Dynamic, NodeName: k.node, Namespace: agentNS, ClusterName: cluster,
		Layout: agent.Layout{KubeletDir: k.dir}, StateDir: stateDir, Logger: log,
		Daemon:   daemon.Options{Observer: rec, Logger: log},
		Metrics:  vm,
		Debounce: 300 * time.Millisecond, StatusInterval: time.Second, MaintenanceInterval: 4 * time.Second,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 300 * time.Millisecond,
	}
	for _, m := range mods {
		m(&opt)
	}
	if opt.Daemon.Isolate != nil {
		opt.Daemon.Isolate.Storage = storage
	}
	a, err := agent.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	ra := &runningAgent{a: a, reg: reg, rec: rec, cancel: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	t.Cleanup(ra.stop)
	return ra
}

func (r *runningAgent) stop() {
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(45 * time.Second):
	}
}

// testWriter logs through t (until the test ends).
type testWriter struct {
	t    *testing.T
	node string
}

func (w testWriter) Write(b []byte) (int, error) {
	if os.Getenv("BACKUPD_TEST_VERBOSE") != "" {
		w.t.Logf("%s: %s", w.node, strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

func policyNames(vols []agent.Volume) []string {
	var n []string
	for _, v := range vols {
		n = append(n, v.PolicyName())
	}
	sort.Strings(n)
	return n
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() (bool, string)) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var last string
	for {
		ok, why := f()
		if ok {
			t.Logf("%s: after %s", what, time.Since(start).Round(time.Millisecond))
			return
		}
		last = why
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// repoView reads the repository as a user would, freshly each time.
type repoView struct {
	t    *testing.T
	spec location.Spec
}

func (r repoView) open(ctx context.Context) *repository.Repo {
	r.t.Helper()
	be, err := location.Open(ctx, r.spec, location.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	repo, err := repository.Open(ctx, be, []byte(repoPass), repository.Options{})
	if err != nil {
		r.t.Fatal(err)
	}
	return repo
}

func (r repoView) snapshots(ctx context.Context) map[string][]*snapshot.Snapshot {
	r.t.Helper()
	snaps, _, err := snapshot.LoadAll(ctx, r.open(ctx))
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string][]*snapshot.Snapshot{}
	for _, s := range snaps {
		out[s.Policy] = append(out[s.Policy], s)
	}
	return out
}

func gauge(t *testing.T, reg *collectors.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue(), true
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue(), true
			}
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// seriesWith returns the names of the metrics that have a series with the
// label value.
func seriesWith(t *testing.T, reg *collectors.Registry, label, value string) []string {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fams {
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					out = append(out, f.GetName())
					break metrics
				}
			}
		}
	}
	return out
}

// counter is the value of a counter series of reg.
func counter(t *testing.T, reg *collectors.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func getPolicy(t *testing.T, ctx context.Context, env *kubetest.Env, name string) *v1alpha1.BackupPolicy {
	t.Helper()
	u, err := env.Dynamic.Resource(agent.PolicyGVR).Namespace(testNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var bp v1alpha1.BackupPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &bp); err != nil {
		t.Fatal(err)
	}
	return &bp
}

// testCluster is a kube-apiserver with backupd's CRDs and a MinIO bucket
// holding an initialised repository, which the BackupRepository "shared"
// names.
type testCluster struct {
	env  *kubetest.Env
	spec location.Spec
	repo repoView
}

// startCluster starts the apiserver and MinIO, initialises the repository
// and applies the namespaces (testNS, agentNS), the repository's Secret,
// the BackupRepository "shared" and the given documents.
func startCluster(t *testing.T, docs string) *testCluster {
	t.Helper()
	env := kubetest.Start(t)
	mc := s3test.StartMinIO(t)
	bucket := mc.NewBucket(t)
	ctx := t.Context()
	id, secret := mc.Credentials()
	spec := location.Spec{Location: "s3://" + bucket + "/repo", S3: location.S3{Endpoint: mc.Endpoint(), Region: s3test.Region, PathStyle: "true",
		Credentials: location.Credentials{AccessKeyID: id, SecretAccessKey: secret}}}
	be, err := location.Create(ctx, spec, location.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repository.Init(ctx, be, []byte(repoPass), repository.Options{}); err != nil {
		t.Fatal(err)
	}
	env.Apply(t, ctx, []byte(fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: Namespace
metadata: {name: %[2]s}
---
apiVersion: v1
kind: Secret
metadata: {name: repo, namespace: %[2]s}
stringData:
  password: %[3]q
  AWS_ACCESS_KEY_ID: %[4]q
  AWS_SECRET_ACCESS_KEY: %[5]q
---
apiVersion: backupd.meshbackup.io/v1alpha1
kind: BackupRepository
metadata: {name: shared}
spec:
  s3:
    bucket: %[6]s
    prefix: repo
    endpoint: %[7]s
    region: %[8]s
    pathStyle: "true"
    credentialsSecretRef: {namespace: %[2]s, name: repo}
  passwordSecretRef: {namespace: %[2]s, name: repo, key: password}
---
%[9]s
`, testNS, agentNS, repoPass, id, secret, bucket, mc.Endpoint(), s3test.Region, docs)), "test")
	return &testCluster{env: env, spec: spec, repo: repoView{t: t, spec: spec}}
}

// TestAgentsOnTwoNodes runs two agents as two nodes against a real
// kube-apiserver and one MinIO bucket (README "Kubernetes", docs/DESIGN.md
// "Node agent").
func TestAgentsOnTwoNodes(t *testing.T) {
	c := startCluster(t, `
apiVersion: backupd.meshbackup.io/v1alpha1
kind: BackupPolicy
metadata: {name: mesh, namespace: shop}
spec:
  repository: shared
  meshDefault: true
  schedule: "@every 2s"
  rpo: 1m
  retention: {keepLast: 2}
  drill: {schedule: "@every 1h"}
  verify: {schedule: "@every 1h"}
`)
	env, repo, ctx := c.env, c.repo, t.Context()

	ka := newKubeletStandIn(t, ctx, env.Clientset, "node-a")
	kb := newKubeletStandIn(t, ctx, env.Clientset, "node-b")
	for _, c := range []struct {
		claim string
		ann   map[string]string
	}{{"web-data", nil}, {"flaky-data", nil}, {"plain-data", nil}, {"api-data", nil}, {"opt-data", map[string]string{agent.AnnotationBackup: "false"}},
		{"data-consul-server-0", nil}, {"new-data", nil}} {
		ka.provision(ctx, testNS, c.claim, c.ann)
	}
	webDirs := ka.runPod(ctx, meshPod("web-0", istio, "web-data"))
	webOpt := volumeOptions("web-0", 0)
	flakyDirs := ka.runPod(ctx, meshPod("flaky-0", istio, "flaky-data"))
	ka.runPod(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain-0", Namespace: testNS},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{pvcVolume("data", "plain-data")}}})
	kb.runPod(ctx, meshPod("api-0", linkerd, "api-data"))
	kb.runPod(ctx, meshPod("opt-0", consul, "opt-data"))
	kb.runPod(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "consul-server-0", Namespace: testNS,
		Labels:          map[string]string{"app": "consul", "component": "server", "release": "consul"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "consul-server", UID: "5e1d7a3b-0000-4000-8000-000000000001"}}},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{pvcVolume("data-consul", "data-consul-server-0")}}})

	// Live mutation of the web volume while it is backed up.
	mutCtx, stopMutation := context.WithCancel(ctx)
	var mutWG sync.WaitGroup
	mutWG.Add(1)
	go func() {
		defer mutWG.Done()
		for mutCtx.Err() == nil {
			if err := workload.Mutate(webDirs["data"], webOpt, 1); err != nil {
				t.Errorf("mutate: %v", err)
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
	}()
	defer func() { stopMutation(); mutWG.Wait() }()

	stateA, stateB := t.TempDir(), t.TempDir()
	// Node b's agent backs up in child processes (the node agent's
	// default), node a's in its own process: the children get the S3
	// credentials the agent read from the cluster.
	agA := startAgent(t, env, ka, stateA)
	agB := startAgent(t, env, kb, stateB, isolated(t))

	// Each agent backs up exactly its own node's mesh volumes; the plain
	// pod, the opted-out PVC, the emptyDir and the secret are left out.
	wantA := []string{"shop_flaky-data", "shop_web-data"}
	wantB := []string{"shop_api-data", "shop_data-consul-server-0"}
	eventually(t, "each agent selects its node's mesh volumes", 30*time.Second, func() (bool, string) {
		a, b := policyNames(agA.a.Volumes()), policyNames(agB.a.Volumes())
		return slices.Equal(a, wantA) && slices.Equal(b, wantB), fmt.Sprintf("node-a %v, node-b %v", a, b)
	})
	eventually(t, "snapshots of every selected volume", 60*time.Second, func() (bool, string) {
		s := repo.snapshots(ctx)
		for _, p := range append(slices.Clone(wantA), wantB...) {
			if len(s[p]) == 0 {
				return false, "none yet of " + p
			}
		}
		return true, ""
	})
	// Node b's backups ran in its children: the bucket's operations its
	// registry counts are theirs (this test's agents do not meter their
	// own backend).
	if n := counter(t, agB.reg, "backupd_storage_operations_total", map[string]string{"repository": "shared", "op": "save", "result": "ok"}); n == 0 {
		t.Error("node b's backup children reported no storage operations")
	}
	for p, snaps := range repo.snapshots(ctx) {
		if !slices.Contains(wantA, p) && !slices.Contains(wantB, p) {
			t.Errorf("snapshots of policy %s, which no rule selects", p)
		}
		for _, s := range snaps {
			if want := cluster + "_" + p; s.Hostname != want {
				t.Errorf("snapshot of %s has host %q, want %q (the PVC's identity, not the node)", p, s.Hostname, want)
			}
		}
	}

	// Status: one entry per volume from both nodes' agents, and the
	// leader's conditions.
	eventually(t, "status of the policy", 30*time.Second, func() (bool, string) {
		bp := getPolicy(t, ctx, env, "mesh")
		nodes := map[string]string{}
		for _, v := range bp.Status.Volumes {
			if v.LastBackupTime == nil || v.LastSnapshotID == "" {
				return false, "volume " + v.Name + " without a last backup"
			}
			nodes[v.PersistentVolumeClaim] = v.Node
		}
		want := map[string]string{"web-data": "node-a", "flaky-data": "node-a", "api-data": "node-b", "data-consul-server-0": "node-b"}
		if fmt.Sprint(nodes) != fmt.Sprint(want) {
			return false, fmt.Sprintf("volumes %v", nodes)
		}
		for _, c := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionRPOMet} {
			cond := findCondition(bp.Status.Conditions, c)
			if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != bp.Generation {
				return false, fmt.Sprintf("condition %s: %+v", c, cond)
			}
		}
		if bp.Status.VolumeCount != 4 || bp.Status.LastBackupTime == nil {
			return false, fmt.Sprintf("volumeCount %d, lastBackupTime %v", bp.Status.VolumeCount, bp.Status.LastBackupTime)
		}
		return true, ""
	})

	// Metrics carry the Kubernetes names, through the volume info metric.
	if v, ok := gauge(t, agA.reg, "backupd_volume_info", map[string]string{"policy": "shop_web-data", "namespace": testNS,
		"persistentvolumeclaim": "web-data", "pod": "web-0", "node": "node-a"}); !ok || v != 1 {
		t.Errorf("backupd_volume_info of web-data on node-a: %v %v", v, ok)
	}
	if _, ok := gauge(t, agA.reg, "backupd_volume_info", map[string]string{"persistentvolumeclaim": "api-data"}); ok {
		t.Errorf("node-a's agent reports node-b's volume api-data")
	}
	if v, _ := gauge(t, agB.reg, "backupd_last_backup_success_timestamp_seconds", map[string]string{"policy": "shop_api-data"}); v <= 0 {
		t.Errorf("backupd_last_backup_success_timestamp_seconds of api-data on node-b = %v", v)
	}
	// The dashboards' namespace variable and per-PVC table, on a real
	// Prometheus scraping both agents.
	checkPVCDashboard(t, map[string]string{"web-data": "node-a", "api-data": "node-b"}, agA, agB)

	// A new pod is picked up.
	ka.runPod(ctx, meshPod("new-0", istio, "new-data"))
	eventually(t, "the new pod's volume is backed up", 30*time.Second, func() (bool, string) {
		return len(repo.snapshots(ctx)["shop_new-data"]) > 0, fmt.Sprint(policyNames(agA.a.Volumes()))
	})

	// A failing backup (the volume's directory vanished under the agent)
	// makes Events on the pod and the policy, and the status names it.
	if err := os.RemoveAll(flakyDirs["data"]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "BackupFailed events", 30*time.Second, func() (bool, string) {
		evs, err := env.Clientset.CoreV1().Events(testNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		onPod, onPVC, onPolicy := false, false, false
		for _, e := range evs.Items {
			if e.Reason != "BackupFailed" || e.Type != corev1.EventTypeWarning {
				continue
			}
			onPod = onPod || e.InvolvedObject.Kind == "Pod" && e.InvolvedObject.Name == "flaky-0"
			onPVC = onPVC || e.InvolvedObject.Kind == "PersistentVolumeClaim" && e.InvolvedObject.Name == "flaky-data"
			onPolicy = onPolicy || e.InvolvedObject.Kind == "BackupPolicy" && e.InvolvedObject.Name == "mesh"
		}
		return onPod && onPVC && onPolicy, fmt.Sprintf("on pod %v, on PVC %v, on policy %v", onPod, onPVC, onPolicy)
	})
	eventually(t, "lastError in status", 20*time.Second, func() (bool, string) {
		for _, v := range getPolicy(t, ctx, env, "mesh").Status.Volumes {
			if v.PersistentVolumeClaim == "flaky-data" {
				return v.LastError != "", "no lastError for flaky-data"
			}
		}
		return false, "no entry for flaky-data"
	})

	// A deleted pod's volume stops being scheduled; its snapshots are kept.
	kb.deletePod(ctx, testNS, "api-0")
	eventually(t, "the deleted pod's volume leaves the schedule", 30*time.Second, func() (bool, string) {
		n := policyNames(agB.a.Volumes())
		return !slices.Contains(n, "shop_api-data"), fmt.Sprint(n)
	})
	eventually(t, "the deleted pod's volume leaves the status", 20*time.Second, func() (bool, string) {
		for _, v := range getPolicy(t, ctx, env, "mesh").Status.Volumes {
			if v.PersistentVolumeClaim == "api-data" {
				return false, "api-data still listed"
			}
		}
		return true, ""
	})
	kept := len(repo.snapshots(ctx)["shop_api-data"])
	time.Sleep(5 * time.Second) // two schedule periods and more
	if n := len(repo.snapshots(ctx)["shop_api-data"]); n == 0 || n > kept {
		t.Errorf("snapshots of the deleted pod's PVC: %d, then %d: want them kept, and no new ones", kept, n)
	}

	// Restore of the PVC's latest snapshot is byte-exact: once the workload
	// stops, the next snapshot must equal the volume.
	stopMutation()
	mutWG.Wait()
	quiet := time.Now()
	var latest *snapshot.Snapshot
	eventually(t, "a snapshot after the workload stopped", 30*time.Second, func() (bool, string) {
		for _, s := range repo.snapshots(ctx)["shop_web-data"] {
			if s.Time.After(quiet) {
				latest = s
				return true, ""
			}
		}
		return false, "none yet"
	})
	r := repo.open(ctx)
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if _, err := restorer.New(r, restorer.Options{}).Restore(ctx, latest, target); err != nil {
		t.Fatal(err)
	}
	want, err := workload.Manifest(webDirs["data"])
	if err != nil {
		t.Fatal(err)
	}
	got, err := workload.Manifest(target)
	if err != nil {
		t.Fatal(err)
	}
	if d := workload.Diff(want, got, true); len(d) > 0 {
		t.Errorf("restore of web-data's latest snapshot differs from the volume: %v", d[:min(len(d), 10)])
	}

	// Only the leader prunes; killing it moves the lease and the pruning.
	leader, follower := agA, agB
	if agB.a.Leading() {
		leader, follower = agB, agA
	}
	eventually(t, "the leader applies retention", 20*time.Second, func() (bool, string) {
		return leader.a.Stats.Retained.Load() > 0, "no retention pass yet"
	})
	if !leader.a.Leading() || follower.a.Leading() || follower.a.Stats.Retained.Load() != 0 {
		t.Fatalf("leader %v (retained %d), follower leading %v (retained %d)", leader.a.Leading(), leader.a.Stats.Retained.Load(),
			follower.a.Leading(), follower.a.Stats.Retained.Load())
	}
	// Both nodes' volumes are held to keepLast 2 (+1 being written), by
	// the leader alone.
	eventually(t, "retention of both nodes' volumes", 30*time.Second, func() (bool, string) {
		s := repo.snapshots(ctx)
		for _, p := range []string{"shop_web-data", "shop_data-consul-server-0"} {
			if len(s[p]) > 3 {
				return false, fmt.Sprintf("%s has %d snapshots", p, len(s[p]))
			}
		}
		return true, ""
	})
	lastSuccess := map[string]float64{}
	for _, v := range leader.a.Volumes() {
		lastSuccess[v.PolicyName()], _ = gauge(t, leader.reg, "backupd_last_backup_success_timestamp_seconds", map[string]string{"policy": v.PolicyName()})
	}
	leader.stop()
	eventually(t, "the follower takes the lease and prunes", 30*time.Second, func() (bool, string) {
		return follower.a.Leading() && follower.a.Stats.Retained.Load() > 0, fmt.Sprintf("leading %v, retained %d", follower.a.Leading(), follower.a.Stats.Retained.Load())
	})

	// An agent restart keeps every last-success time: they come from the
	// repository, before any new backup.
	k, state := ka, stateA
	if leader == agB {
		k, state = kb, stateB
	}
	again := startAgent(t, env, k, state)
	eventually(t, "the restarted agent's daemon is ready", 30*time.Second, func() (bool, string) {
		d := again.a.Daemon()
		return d != nil && d.Ready(), "not ready"
	})
	for p, before := range lastSuccess {
		if p == "shop_flaky-data" {
			continue // its volume is gone: no new backup, and no old one
		}
		v, _ := gauge(t, again.reg, "backupd_last_backup_success_timestamp_seconds", map[string]string{"policy": p})
		if before <= 0 || v < before {
			t.Errorf("%s: last success %v before the restart, %v after", p, before, v)
		}
	}
}

func findCondition(cs []metav1.Condition, t string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}
