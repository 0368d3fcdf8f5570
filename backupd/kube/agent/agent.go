// Package agent is `backupd agent`, the node agent of a Kubernetes cluster
// (docs/DESIGN.md "Node agent", README "Kubernetes"). It watches the pods of
// its own node (a field selector on spec.nodeName), the PVCs, PVs and
// namespaces, and the BackupPolicy and BackupRepository custom resources;
// it selects the volumes to back up by the mesh rules (mesh.go), resolves
// each to the directory where the kubelet mounted it, and turns every
// (policy, volume) into one policy of a daemon config, which it hands to
// the daemon on its reload channel whenever the cluster changes. The
// daemon does the backups, verify runs and drills as for `backupd run`.
//
// Agents of all nodes share their repositories: one of them, holding a
// coordination.k8s.io Lease, does what must run once per repository
// (retention, verify) and writes the policies' conditions; every agent
// writes its own volumes' entries of the policies' status by server-side
// apply under a field manager of its own.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/kube/api/v1alpha1"
	"github.com/meshbackup/backupd/backupd/results"
)

// Resources of the custom kinds.
var (
	PolicyGVR = v1alpha1.GroupVersion.WithResource(v1alpha1.BackupPolicyResource)
	RepoGVR   = v1alpha1.GroupVersion.WithResource(v1alpha1.BackupRepositoryResource)
)

// Options configure an agent.
type Options struct {
	Clientset kubernetes.Interface
	Dynamic   dynamic.Interface
	// NodeName is this node's name (the downward API's spec.nodeName).
	NodeName string
	// Namespace is the agent's own namespace, where the leader Lease is.
	Namespace string
	// ClusterName is the first part of every volume's host name: unique
	// per cluster sharing a bucket.
	ClusterName string
	Layout      Layout
	// StateDir holds the stable links to the volumes (the policies'
	// sources), the CA files of repositories and the drills' scratch
	// space. It must be the same path on every node: snapshots record it.
	StateDir string
	Logger   *slog.Logger
	// Daemon is the template of the daemon's options (observer, repository
	// options, isolation); the agent sets Hostname, Password, ClusterWork,
	// OpenBackend and the isolation's Spec (the credentials it read).
	Daemon daemon.Options
	// OpenBackend opens a repository's backend from its spec, which holds
	// the credentials read from the BackupRepository's secret; nil:
	// location.Open with no options.
	OpenBackend func(ctx context.Context, rc config.Repository, spec location.Spec) (backend.Backend, error)
	// Metrics, if set, gets the agent's metrics (collectors.Volumes:
	// backupd_volume_info, backupd_agent_leader).
	Metrics Metrics
	// OnDaemon, if set, is called with the daemon before it runs (main
	// serves its status and metrics).
	OnDaemon func(*daemon.Daemon)

	// MaxConcurrent is how many runs of the node may go at once
	// (daemon.Options.MaxRuns): 2, sized for 2 cores.
	MaxConcurrent int

	// Debounce is how long the cluster must be quiet before a new config
	// is built: 2s.
	Debounce time.Duration
	// StatusInterval is how often the status of the policies is written
	// (also after every run): 30s.
	StatusInterval time.Duration
	// MaintenanceInterval is how often the leader applies retention to
	// every volume of the cluster: 10m.
	MaintenanceInterval time.Duration
	// LockWait is how long a backup waits for the exclusive repository
	// lock of the leader's retention to go before it fails as locked
	// (repository.Options.SharedLockWait, unless the daemon's
	// RepoOptions set it): 2m. The leader's retention waits up to a
	// quarter of it for the backups' shared locks to end
	// (repository.Options.ExclusiveLockWait) before it is postponed.
	LockWait time.Duration
	// RetainRetry is how soon the leader tries again the retention of a
	// volume that a backup's lock postponed, instead of waiting for the
	// next maintenance pass: 1m (with up to 20% of jitter).
	RetainRetry time.Duration
	// Lease: name (backupd-agent-leader) and timings (15s, 10s, 2s).
	LeaseName                                 string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Stats are counts for tests and logs.
type Stats struct {
	// Reloads counts configs handed to the daemon.
	Reloads atomic.Int64
	// Retained counts the leader's successful retention passes of a volume.
	Retained atomic.Int64
	// RetainPostponed counts the leader's retention passes of a volume
	// that a backup's lock postponed (tried again after RetainRetry).
	RetainPostponed atomic.Int64
}

// Agent is a node agent.
type Agent struct {
	opt Options
	log *slog.Logger

	Stats Stats

	leading atomic.Bool
	kick    chan struct{} // the cluster changed
	runDone chan struct{} // a run finished: write status

	mu      sync.Mutex
	volumes []Volume
	// departed are the volumes that left the schedule (by policy name),
	// with when, so that a run of theirs still going is reported by name.
	departed map[string]departedVolume
	secrets  map[string]repoSecrets // repository -> secrets read from the API
	d        *daemon.Daemon

	pods   cache.SharedIndexInformer
	pvcs   cache.SharedIndexInformer
	pvs    cache.SharedIndexInformer
	nss    cache.SharedIndexInformer
	pols   cache.SharedIndexInformer
	repos  cache.SharedIndexInformer
	events record.EventRecorder
}

// departedVolume is a volume that left this node's schedule.
type departedVolume struct {
	Volume
	at  time.Time
	why string
}

// departedKept is how long a departed volume is remembered for the Events
// of a run of it still going: longer than any backup.
const departedKept = 24 * time.Hour

// Metrics receives the agent's metrics (collectors.Volumes implements it;
// this package does not import Prometheus, docs/DESIGN.md §2.3).
type Metrics interface {
	// SetVolumes replaces the volume info: one row per volume, label
	// values policy, namespace, persistentvolumeclaim, pod, volume, node.
	SetVolumes(rows [][6]string)
	SetLeader(on bool)
}

type nopMetrics struct{}

func (nopMetrics) SetVolumes([][6]string) {}
func (nopMetrics) SetLeader(bool)         {}

// repoSecrets are a repository's secrets, in memory only: never logged,
// never in an error, a config or a file.
type repoSecrets struct {
	password []byte
	creds    location.Credentials
}

// New checks the options; it does no I/O.
func New(opt Options) (*Agent, error) {
	if opt.Clientset == nil || opt.Dynamic == nil {
		return nil, errors.New("agent: Kubernetes clients are required")
	}
	if opt.NodeName == "" {
		return nil, errors.New("agent: the node name is required (--node-name or NODE_NAME)")
	}
	if opt.Namespace == "" {
		return nil, errors.New("agent: the agent's namespace is required (--namespace or POD_NAMESPACE)")
	}
	if !config.ValidHost(opt.ClusterName) {
		return nil, fmt.Errorf("agent: cluster name %q: want letters, digits, '_', '.', '-'", opt.ClusterName)
	}
	if opt.StateDir == "" || !filepath.IsAbs(opt.StateDir) {
		return nil, fmt.Errorf("agent: state directory %q: want an absolute path", opt.StateDir)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if opt.MaxConcurrent <= 0 {
		opt.MaxConcurrent = 2
	}
	def(&opt.Debounce, 2*time.Second)
	def(&opt.StatusInterval, 30*time.Second)
	def(&opt.MaintenanceInterval, 10*time.Minute)
	def(&opt.LockWait, 2*time.Minute)
	def(&opt.RetainRetry, time.Minute)
	def(&opt.LeaseDuration, 15*time.Second)
	def(&opt.RenewDeadline, 10*time.Second)
	def(&opt.RetryPeriod, 2*time.Second)
	if opt.LeaseName == "" {
		opt.LeaseName = "backupd-agent-leader"
	}
	a := &Agent{opt: opt, log: opt.Logger.With("component", "agent", "node", opt.NodeName),
		kick: make(chan struct{}, 1), runDone: make(chan struct{}, 1), secrets: map[string]repoSecrets{},
		departed: map[string]departedVolume{}}
	if a.opt.Metrics == nil {
		a.opt.Metrics = nopMetrics{}
	}
	return a, nil
}

// Leading reports whether the agent holds the leader lease.
func (a *Agent) Leading() bool { return a.leading.Load() }

// Daemon returns the running daemon (nil before Run built it).
func (a *Agent) Daemon() *daemon.Daemon {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.d
}

// Volumes returns the volumes of the config last handed to the daemon.
func (a *Agent) Volumes() []Volume {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.volumes)
}

func (a *Agent) trigger() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) handler(generationOnly bool) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { a.trigger() },
		UpdateFunc: func(o, n any) {
			if generationOnly {
				ou, ok1 := o.(*unstructured.Unstructured)
				nu, ok2 := n.(*unstructured.Unstructured)
				if ok1 && ok2 && ou.GetGeneration() == nu.GetGeneration() && ou.GetDeletionTimestamp() == nil {
					return // a status write
				}
			}
			a.trigger()
		},
		DeleteFunc: func(any) { a.trigger() },
	}
}

// Run runs the agent until ctx ends: informers, the daemon, the config
// rebuilds, status writes and the leader election.
func (a *Agent) Run(ctx context.Context) error {
	o := a.opt
	f := informers.NewSharedInformerFactory(o.Clientset, 0)
	pf := informers.NewSharedInformerFactoryWithOptions(o.Clientset, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.FieldSelector = "spec.nodeName=" + o.NodeName
	}))
	df := dynamicinformer.NewDynamicSharedInformerFactory(o.Dynamic, 0)
	a.pods = pf.Core().V1().Pods().Informer()
	a.pvcs = f.Core().V1().PersistentVolumeClaims().Informer()
	a.pvs = f.Core().V1().PersistentVolumes().Informer()
	a.nss = f.Core().V1().Namespaces().Informer()
	a.pols = df.ForResource(PolicyGVR).Informer()
	a.repos = df.ForResource(RepoGVR).Informer()
	for _, inf := range []cache.SharedIndexInformer{a.pods, a.pvcs, a.pvs, a.nss, a.repos} {
		if _, err := inf.AddEventHandler(a.handler(false)); err != nil {
			return fmt.Errorf("agent: informer handler: %w", err)
		}
	}
	if _, err := a.pols.AddEventHandler(a.handler(true)); err != nil {
		return fmt.Errorf("agent: informer handler: %w", err)
	}
	stop := make(chan struct{})
	f.Start(stop)
	pf.Start(stop)
	df.Start(stop)
	defer func() {
		// Shutdown waits for the informers, which stop on stop.
		close(stop)
		f.Shutdown()
		pf.Shutdown()
		df.Shutdown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), a.pods.HasSynced, a.pvcs.HasSynced, a.pvs.HasSynced, a.nss.HasSynced, a.pols.HasSynced, a.repos.HasSynced) {
		return fmt.Errorf("agent: informers did not sync: %w", context.Cause(ctx))
	}

	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: o.Clientset.CoreV1().Events("")})
	defer bc.Shutdown()
	a.events = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "backupd-agent", Host: o.NodeName})

	cfg, vols := a.build(ctx)
	dopt := o.Daemon
	dopt.Hostname = o.NodeName
	dopt.ClusterWork = a.Leading
	dopt.MaxRuns = o.MaxConcurrent
	dopt.Password = a.password
	dopt.OpenBackend = a.openBackend
	if o.Daemon.Isolate != nil {
		iso := *o.Daemon.Isolate
		iso.Spec = a.spec
		dopt.Isolate = &iso
	}
	if dopt.RepoOptions.SharedLockWait == 0 {
		dopt.RepoOptions.SharedLockWait = o.LockWait
	}
	// The leader's retention waits a quarter of that for the backups in
	// its way, which wait for it meanwhile: with backups following one
	// another on the nodes it would otherwise never get the lock.
	if dopt.RepoOptions.ExclusiveLockWait == 0 {
		dopt.RepoOptions.ExclusiveLockWait = o.LockWait / 4
	}
	dopt.Observer = &observer{Observer: o.Daemon.Observer, a: a}
	if o.Daemon.Logger == nil {
		dopt.Logger = o.Logger
	}
	d, err := daemon.New(cfg, dopt)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.mu.Lock()
	a.d = d
	a.mu.Unlock()
	a.setVolumes(vols, true)
	if o.OnDaemon != nil {
		o.OnDaemon(d)
	}
	a.log.Info("agent started", "volumes", len(vols), "repositories", len(cfg.Repositories))

	reload := make(chan *config.Config)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := d.Run(gctx, reload); err != nil {
			return fmt.Errorf("agent: daemon: %w", err)
		}
		return context.Canceled
	})
	g.Go(func() error { return a.rebuildLoop(gctx, cfg, reload) })
	g.Go(func() error { return a.statusLoop(gctx) })
	g.Go(func() error { return a.elect(gctx) })
	err = g.Wait()
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// rebuildLoop builds a new config when the cluster has been quiet for
// Debounce after a change, and hands it to the daemon when it differs from
// the running one. Only the newest config waits to be handed over.
func (a *Agent) rebuildLoop(ctx context.Context, running *config.Config, reload chan<- *config.Config) error {
	var pending *config.Config
	var pendingVols []Volume
	var debounce <-chan time.Time
	for {
		var out chan<- *config.Config
		if pending != nil {
			out = reload
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
			debounce = time.After(a.opt.Debounce)
		case <-debounce:
			debounce = nil
			cfg, vols := a.build(ctx)
			if sameConfig(cfg, running) && pending == nil {
				a.setVolumes(vols, false) // pod names may change without changing the config
				continue
			}
			pending, pendingVols = cfg, vols
		case out <- pending:
			running = pending
			a.setVolumes(pendingVols, false)
			a.Stats.Reloads.Add(1)
			a.log.Info("config handed to the daemon", "volumes", len(pendingVols), "repositories", len(pending.Repositories))
			pending, pendingVols = nil, nil
			a.kickStatus()
		}
	}
}

// setVolumes makes vols the volumes of the schedule: the info metric
// follows, and (but for the first schedule) a volume that joins or leaves
// it gets a Normal Event on its PVC and policy, VolumeScheduled or
// VolumeReleased, saying why.
func (a *Agent) setVolumes(vols []Volume, initial bool) {
	now := time.Now()
	a.mu.Lock()
	old := a.volumes
	a.volumes = vols
	for k, dv := range a.departed {
		if now.Sub(dv.at) > departedKept {
			delete(a.departed, k)
		}
	}
	byName := map[string]bool{}
	for _, v := range vols {
		byName[v.PolicyName()] = true
		delete(a.departed, v.PolicyName())
	}
	var left []departedVolume
	for _, v := range old {
		if !byName[v.PolicyName()] {
			dv := departedVolume{Volume: v, at: now, why: a.whyDeparted(v)}
			a.departed[v.PolicyName()] = dv
			left = append(left, dv)
		}
	}
	a.mu.Unlock()
	a.setInfo(vols)
	if initial {
		return
	}
	had := map[string]bool{}
	for _, v := range old {
		had[v.PolicyName()] = true
	}
	for _, v := range vols {
		if !had[v.PolicyName()] {
			a.volumeEvent(v, corev1.EventTypeNormal, "VolumeScheduled",
				fmt.Sprintf("volume %s (%s) of pod %s/%s is backed up on node %s", v.VolumeName, v.StatusName(), v.Namespace, v.Pod, a.opt.NodeName))
		}
	}
	for _, dv := range left {
		a.log.Info("volume left the schedule; its snapshots are kept", "namespace", dv.Namespace, "pod", dv.Pod, "volume", dv.VolumeName, "why", dv.why)
		a.volumeEvent(dv.Volume, corev1.EventTypeNormal, "VolumeReleased",
			fmt.Sprintf("volume %s (%s) of pod %s/%s is no longer backed up on node %s: %s; its snapshots are kept", dv.VolumeName, dv.StatusName(), dv.Namespace, dv.Pod, a.opt.NodeName, dv.why))
	}
}

// whyDeparted says why a volume left the schedule, from the informers'
// caches.
func (a *Agent) whyDeparted(v Volume) string {
	if why := a.podGone(v); why != "" {
		return why
	}
	if fi, err := os.Stat(v.Dir); err != nil || !fi.IsDir() {
		return "its directory is not mounted"
	}
	return "no BackupPolicy selects it any more"
}

// podGone says how the volume's pod went away (deleted, being deleted,
// no longer running), or "" while it runs.
func (a *Agent) podGone(v Volume) string {
	if a.pods == nil {
		return ""
	}
	o, ok, _ := a.pods.GetStore().GetByKey(v.Namespace + "/" + v.Pod)
	pod, _ := o.(*corev1.Pod)
	switch {
	case !ok || pod == nil || string(pod.UID) != v.PodUID:
		return fmt.Sprintf("pod %s/%s was deleted", v.Namespace, v.Pod)
	case pod.DeletionTimestamp != nil:
		return fmt.Sprintf("pod %s/%s is being deleted", v.Namespace, v.Pod)
	case pod.Status.Phase != corev1.PodRunning:
		return fmt.Sprintf("pod %s/%s is %s", v.Namespace, v.Pod, pod.Status.Phase)
	}
	return ""
}

// volumeEvent records an Event on the volume's PVC (if it has one and it
// still exists) and its BackupPolicy.
func (a *Agent) volumeEvent(v Volume, typ, reason, msg string) {
	if a.events == nil {
		return
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	if v.PVC != "" && a.pvcs != nil {
		if o, ok, _ := a.pvcs.GetStore().GetByKey(v.Namespace + "/" + v.PVC); ok {
			if pvc, ok := o.(*corev1.PersistentVolumeClaim); ok {
				a.events.Event(pvc, typ, reason, msg)
			}
		}
	}
	bp := v.Policy
	a.events.Event(&corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "BackupPolicy", Namespace: bp.Namespace, Name: bp.Name, UID: bp.UID},
		typ, reason, msg)
}

func (a *Agent) setInfo(vols []Volume) {
	rows := make([][6]string, 0, len(vols))
	for _, v := range vols {
		rows = append(rows, [6]string{v.PolicyName(), v.Namespace, v.PVC, v.Pod, v.VolumeName, a.opt.NodeName})
	}
	a.opt.Metrics.SetVolumes(rows)
}

// cluster reads the informers' caches.
func (a *Agent) cluster() Cluster {
	c := Cluster{PVCs: map[string]*corev1.PersistentVolumeClaim{}, PVs: map[string]*corev1.PersistentVolume{}, Namespaces: map[string]*corev1.Namespace{}}
	for _, o := range a.pods.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok {
			c.Pods = append(c.Pods, p)
		}
	}
	for _, o := range a.pvcs.GetStore().List() {
		if p, ok := o.(*corev1.PersistentVolumeClaim); ok {
			c.PVCs[p.Namespace+"/"+p.Name] = p
		}
	}
	for _, o := range a.pvs.GetStore().List() {
		if p, ok := o.(*corev1.PersistentVolume); ok {
			c.PVs[p.Name] = p
		}
	}
	for _, o := range a.nss.GetStore().List() {
		if n, ok := o.(*corev1.Namespace); ok {
			c.Namespaces[n.Name] = n
		}
	}
	c.Policies = a.policies()
	return c
}

func (a *Agent) policies() []*v1alpha1.BackupPolicy {
	var out []*v1alpha1.BackupPolicy
	for _, o := range a.pols.GetStore().List() {
		var bp v1alpha1.BackupPolicy
		if fromUnstructured(o, &bp) == nil {
			out = append(out, &bp)
		}
	}
	return out
}

func (a *Agent) repository(name string) *v1alpha1.BackupRepository {
	o, ok, err := a.repos.GetStore().GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	var r v1alpha1.BackupRepository
	if fromUnstructured(o, &r) != nil {
		return nil
	}
	return &r
}

func fromUnstructured(o any, out any) error {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return fmt.Errorf("not an unstructured object: %T", o)
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out)
}

// build makes the daemon config of the cluster's state: the repositories
// every policy names (so the leader can apply retention to any volume),
// and one policy per selected volume whose directory is there.
func (a *Agent) build(ctx context.Context) (*config.Config, []Volume) {
	c := a.cluster()
	vols, skipped := Select(c, a.opt.Layout)
	for _, s := range skipped {
		a.log.Debug("volume not backed up", "namespace", s.Namespace, "pod", s.Pod, "volume", s.Volume, "reason", s.Reason)
	}
	cfg := &config.Config{Scheduler: config.Scheduler{PruneGrace: 24 * time.Hour}}
	okRepo := map[string]bool{}
	for _, bp := range c.Policies {
		name := bp.Spec.Repository
		if _, seen := okRepo[name]; seen {
			continue
		}
		okRepo[name] = false
		r := a.repository(name)
		if r == nil {
			a.log.Warn("BackupPolicy names a BackupRepository that does not exist", "policy", bp.Namespace+"/"+bp.Name, "repository", name)
			continue
		}
		rc, err := a.repoConfig(ctx, r)
		if err != nil {
			a.log.Error("BackupRepository not usable", "repository", name, "err", err)
			continue
		}
		okRepo[name] = true
		cfg.Repositories = append(cfg.Repositories, rc)
	}
	var out []Volume
	for _, v := range vols {
		if !okRepo[v.Policy.Spec.Repository] {
			continue
		}
		if fi, err := os.Stat(v.Dir); err != nil || !fi.IsDir() {
			a.log.Info("volume not mounted yet", "namespace", v.Namespace, "pod", v.Pod, "volume", v.VolumeName, "dir", v.Dir)
			continue
		}
		src, err := a.link(v)
		if err != nil {
			a.log.Error("volume not backed up", "namespace", v.Namespace, "pod", v.Pod, "volume", v.VolumeName, "err", err)
			continue
		}
		p, err := PolicyConfig(v, a.opt.ClusterName, src, filepath.Join(a.opt.StateDir, "scratch"))
		if err != nil {
			a.log.Error("BackupPolicy not usable", "policy", v.Policy.Namespace+"/"+v.Policy.Name, "err", err)
			continue
		}
		cfg.Policies = append(cfg.Policies, p)
		out = append(out, v)
	}
	sortConfig(cfg)
	return cfg, out
}

// link points the volume's stable source path, StateDir/volumes/<policy>,
// at its directory under the kubelet's pod directory (which changes with
// every pod): the snapshots' source is the same for every pod of a PVC, so
// each backup finds its parent.
func (a *Agent) link(v Volume) (string, error) {
	dir := filepath.Join(a.opt.StateDir, "volumes")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	src := filepath.Join(dir, v.PolicyName())
	if cur, err := os.Readlink(src); err == nil && cur == v.Dir {
		return src, nil
	}
	tmp := src + ".new"
	_ = os.Remove(tmp)
	if err := os.Symlink(v.Dir, tmp); err != nil {
		return "", fmt.Errorf("link volume: %w", err)
	}
	if err := os.Rename(tmp, src); err != nil {
		return "", fmt.Errorf("link volume: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(a.opt.StateDir, "scratch"), 0o700); err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	return src, nil
}

// repoConfig reads a BackupRepository's secrets through the API into
// memory and returns its config repository.
func (a *Agent) repoConfig(ctx context.Context, r *v1alpha1.BackupRepository) (config.Repository, error) {
	var sec repoSecrets
	pw, err := a.secretKey(ctx, r.Spec.PasswordSecretRef.Namespace, r.Spec.PasswordSecretRef.Name, r.Spec.PasswordSecretRef.Key)
	if err != nil {
		return config.Repository{}, fmt.Errorf("password: %w", err)
	}
	sec.password = []byte(trimNewline(pw))
	caFile := ""
	if s := r.Spec.S3; s != nil {
		if ref := s.CredentialsSecretRef; ref != nil {
			idKey, secretKey := ref.AccessKeyIDKey, ref.SecretAccessKeyKey
			if idKey == "" {
				idKey = "AWS_ACCESS_KEY_ID"
			}
			if secretKey == "" {
				secretKey = "AWS_SECRET_ACCESS_KEY"
			}
			if sec.creds.AccessKeyID, err = a.secretKey(ctx, ref.Namespace, ref.Name, idKey); err != nil {
				return config.Repository{}, fmt.Errorf("S3 credentials: %w", err)
			}
			if sec.creds.SecretAccessKey, err = a.secretKey(ctx, ref.Namespace, ref.Name, secretKey); err != nil {
				return config.Repository{}, fmt.Errorf("S3 credentials: %w", err)
			}
			if ref.SessionTokenKey != "" {
				if sec.creds.SessionToken, err = a.secretKey(ctx, ref.Namespace, ref.Name, ref.SessionTokenKey); err != nil {
					return config.Repository{}, fmt.Errorf("S3 credentials: %w", err)
				}
			}
			sec.creds.AccessKeyID, sec.creds.SecretAccessKey = trimNewline(sec.creds.AccessKeyID), trimNewline(sec.creds.SecretAccessKey)
		}
		if ref := s.CASecretRef; ref != nil {
			pem, err := a.secretKey(ctx, ref.Namespace, ref.Name, ref.Key)
			if err != nil {
				return config.Repository{}, fmt.Errorf("CA certificates: %w", err)
			}
			// Certificates are public: a file is fine (the S3 client reads one).
			caFile = filepath.Join(a.opt.StateDir, "ca", r.Name+".pem")
			if err := os.MkdirAll(filepath.Dir(caFile), 0o700); err != nil {
				return config.Repository{}, fmt.Errorf("CA certificates: %w", err)
			}
			if err := os.WriteFile(caFile, []byte(pem), 0o600); err != nil {
				return config.Repository{}, fmt.Errorf("CA certificates: %w", err)
			}
		}
	}
	rc, err := RepoConfig(r, caFile)
	if err != nil {
		return config.Repository{}, err
	}
	a.mu.Lock()
	a.secrets[r.Name] = sec
	a.mu.Unlock()
	return rc, nil
}

func trimNewline(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// secretKey reads one key of a secret. The error names the secret and the
// key, never a value.
func (a *Agent) secretKey(ctx context.Context, ns, name, key string) (string, error) {
	s, err := a.opt.Clientset.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read secret %s/%s: %w", ns, name, err)
	}
	v, ok := s.Data[key]
	if !ok || len(v) == 0 {
		return "", fmt.Errorf("secret %s/%s has no key %q (or it is empty)", ns, name, key)
	}
	return string(v), nil
}

func (a *Agent) password(rc config.Repository) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.secrets[rc.Name]
	if !ok || len(s.password) == 0 {
		return nil, fmt.Errorf("repository %q: no password read from its BackupRepository's secret", rc.Name)
	}
	return slices.Clone(s.password), nil
}

// spec is where repository rc is, with the S3 credentials read from its
// BackupRepository's secret.
func (a *Agent) spec(rc config.Repository) (location.Spec, error) {
	spec, err := location.FromConfig(rc)
	if err != nil {
		return location.Spec{}, err
	}
	if !rc.IsS3() {
		return spec, nil
	}
	a.mu.Lock()
	spec.S3.Credentials = a.secrets[rc.Name].creds
	a.mu.Unlock()
	return spec, nil
}

func (a *Agent) openBackend(ctx context.Context, rc config.Repository) (backend.Backend, error) {
	spec, err := a.spec(rc)
	if err != nil {
		return nil, err
	}
	if a.opt.OpenBackend != nil {
		return a.opt.OpenBackend(ctx, rc, spec)
	}
	return location.Open(ctx, spec, location.Options{Logger: a.log.With("repository", rc.Name)})
}

// observer passes the daemon's events on and reacts to finished runs:
// Events on failures, a status write.
type observer struct {
	daemon.Observer
	a *Agent
}

func (o *observer) RunFinished(r results.Record) {
	if o.Observer != nil {
		o.Observer.RunFinished(r)
	}
	o.a.runFinished(r)
}

func (a *Agent) kickStatus() {
	select {
	case a.runDone <- struct{}{}:
	default:
	}
}

func (a *Agent) runFinished(r results.Record) {
	a.kickStatus()
	if r.Outcome != results.Failure || r.Reason == results.ReasonInterrupted || (r.Kind != results.Backup && r.Kind != results.Drill) {
		return
	}
	vol, gone := a.volumeOf(r.Policy)
	if vol == nil || a.events == nil {
		return
	}
	reason, what := "BackupFailed", "backup"
	if r.Kind == results.Drill {
		reason, what = "DrillFailed", "restore drill"
	}
	msg := fmt.Sprintf("%s of volume %s (%s) on node %s failed (%s): %s", what, vol.VolumeName, vol.StatusName(), a.opt.NodeName, r.Reason, r.Error)
	if gone != "" {
		// Said first: the message is cut at 1000 characters.
		msg = fmt.Sprintf("%s of volume %s (%s) on node %s did not finish: %s during the run, the volume went away; its earlier snapshots are kept (%s: %s)",
			what, vol.VolumeName, vol.StatusName(), a.opt.NodeName, gone, r.Reason, r.Error)
	}
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	a.events.Event(&corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: vol.Namespace, Name: vol.Pod, UID: types.UID(vol.PodUID)},
		corev1.EventTypeWarning, reason, msg)
	a.volumeEvent(*vol, corev1.EventTypeWarning, reason, msg)
}

// volumeOf returns the volume of a daemon policy, one of the schedule or
// one that left it (its run was still going), and how its pod went away
// if it did.
func (a *Agent) volumeOf(policy string) (vol *Volume, gone string) {
	a.mu.Lock()
	for _, v := range a.volumes {
		if v.PolicyName() == policy {
			a.mu.Unlock()
			return &v, a.podGone(v)
		}
	}
	dv, ok := a.departed[policy]
	a.mu.Unlock()
	if ok {
		return &dv.Volume, dv.why
	}
	return nil, ""
}
