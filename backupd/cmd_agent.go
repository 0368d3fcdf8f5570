package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/budget"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/kube/agent"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/collectors"
	"github.com/meshbackup/backupd/exporter"
)

// agentOptions are the node agent's flags.
type agentOptions struct {
	Kubeconfig    string
	NodeName      string
	Namespace     string
	ClusterName   string
	KubeletDir    string
	HostRoot      string
	StateDir      string
	LeaseName     string
	ListenAddress string
	ProbeAddress  string
	WebConfigFile string
	StatusEvery   time.Duration
	Maintenance   time.Duration
	RetainRetry   time.Duration
	LockWait      time.Duration
	Debounce      time.Duration
	MaxConcurrent int
	IsolateRuns   bool
	Nice          int
	IOClass       string
	CPUClass      string
}

func newAgentCommand(g *globalOptions) *cobra.Command {
	var opts agentOptions
	c := &cobra.Command{
		Use:   "agent",
		Short: "Run the Kubernetes node agent: back up the volumes of this node's mesh pods by the cluster's BackupPolicies",
		Long: `Run on every node (the Helm chart's DaemonSet). The agent watches the pods
scheduled on --node-name, their PVCs and PVs, the namespaces, and the
BackupPolicy and BackupRepository resources; it backs up each selected volume
from the kubelet's directory (--kubelet-dir, read-only) on its policy's
schedule, with verify runs and restore drills, as 'backupd run' does for a
config file. One agent, holding the leader Lease in --namespace, applies
retention and verifies the shared repositories. Status goes to the policies'
status subresource, failures to Events, metrics to --web.listen-address.

What it reads on the node, and why: pods/<uid>/volumes/ below --kubelet-dir
(the mounted PVCs and opted-in emptyDirs it backs up), and, for hostPath PVs
only, their paths below --host-root. Its own state (stable links to the
volumes, drill scratch space, the repository cache) is in --state-dir. It
needs CAP_DAC_READ_SEARCH to read every file, not root. See README
"Kubernetes" and docs/DESIGN.md "Node agent".

Each backup runs in a child process of this binary (--isolate-runs, on by
default): its CPU seconds, peak RSS and I/O are its own although
--max-concurrent runs overlap, and a crash of one backup (a panic, an
out-of-memory kill) fails that run (reason "crashed"), not the agent.
Verify runs, scrubs and drills run in the agent's process.

It runs at --nice, --io-class and --cpu-class (every thread; 0, none and
normal change nothing), and never raises a priority it was started with.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgent(cmd.Context(), opts, g)
		},
	}
	f := c.Flags()
	f.StringVar(&opts.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: the in-cluster service account)")
	f.StringVar(&opts.NodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (env NODE_NAME, from the downward API's spec.nodeName)")
	f.StringVar(&opts.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "the agent's namespace, holding the leader Lease (env POD_NAMESPACE)")
	f.StringVar(&opts.ClusterName, "cluster-name", "kubernetes", "this cluster's name, the first part of every volume's snapshot host name: unique among the clusters sharing a bucket")
	f.StringVar(&opts.LeaseName, "leader-election-lease", "backupd-agent-leader", "name of the coordination.k8s.io Lease, in --namespace, that the agents elect the leader with")
	f.StringVar(&opts.KubeletDir, "kubelet-dir", "/var/lib/kubelet", "the kubelet's root directory as mounted in the agent (read-only, mountPropagation HostToContainer)")
	f.StringVar(&opts.HostRoot, "host-root", "", "where the node's root is mounted, for hostPath PVs (empty: their paths as they are)")
	f.StringVar(&opts.StateDir, "state-dir", "/var/lib/backupd-agent", "the agent's own directory: volume links, drill scratch space, repository cache; the same path on every node")
	f.StringVar(&opts.ListenAddress, "web.listen-address", ":9847", "address to serve metrics and status on")
	f.StringVar(&opts.ProbeAddress, "web.probe-address", "", "also serve /healthz and /readyz here, in plain HTTP")
	f.StringVar(&opts.WebConfigFile, "web.config.file", "", "exporter-toolkit web config file for TLS and basic auth")
	f.DurationVar(&opts.StatusEvery, "status-interval", 30*time.Second, "how often the policies' status is written (also after every run)")
	f.DurationVar(&opts.Maintenance, "maintenance-interval", 10*time.Minute, "how often the leader applies retention to every volume of the cluster")
	f.DurationVar(&opts.RetainRetry, "retain-retry", time.Minute, "how soon the leader tries again a volume's retention that a running backup postponed (instead of waiting for the next maintenance pass)")
	f.DurationVar(&opts.LockWait, "lock-wait", 2*time.Minute, "how long a backup waits for the leader's retention (the repository's exclusive lock) to finish before it fails as locked; the retention waits up to a quarter of it for running backups")
	f.IntVar(&opts.MaxConcurrent, "max-concurrent", 2, "how many runs (backups, verify runs, drills of different volumes) may go at once on this node; a backup in a child process (--isolate-runs) keeps its CPU, RSS and I/O figures its own, an in-process run only at 1")
	f.BoolVar(&opts.IsolateRuns, "isolate-runs", true, "run each backup in a child process (its own CPU, RSS and I/O figures; a crash of it does not end the agent); --isolate-runs=false runs them in the agent")
	f.DurationVar(&opts.Debounce, "debounce", 2*time.Second, "how long the cluster must be quiet after a change before the agent rebuilds its schedule")
	f.IntVar(&opts.Nice, "nice", budget.Default.Nice, "the nice value the agent runs at, 0 (unchanged) to 19 (lowest CPU priority)")
	f.StringVar(&opts.IOClass, "io-class", budget.Default.IOString(), "the I/O class the agent runs at: idle, best-effort, best-effort:N (N from 0 to 7, lowest) or none (unchanged)")
	f.StringVar(&opts.CPUClass, "cpu-class", budget.Default.CPUString(), "the CPU class the agent runs at: normal (the nice value alone) or idle (SCHED_IDLE: only CPU time no other task wants, and a waking proxy takes the CPU at once)")
	return c
}

func runAgent(ctx context.Context, opts agentOptions, g *globalOptions) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	if opts.NodeName == "" {
		return usageErr("--node-name (or NODE_NAME) is required")
	}
	if opts.Namespace == "" {
		return usageErr("--namespace (or POD_NAMESPACE) is required")
	}
	prio := budget.Priority{Nice: opts.Nice}
	if prio.IO, prio.IOLevel, err = budget.ParseIOClass(opts.IOClass); err != nil {
		return usageErr("--io-class: %v", err)
	}
	if prio.CPU, err = budget.ParseCPUClass(opts.CPUClass); err != nil {
		return usageErr("--cpu-class: %v", err)
	}
	if opts.Nice < 0 || opts.Nice > 19 {
		return usageErr("--nice %d: want 0 (unchanged) to 19 (lowest priority)", opts.Nice)
	}
	if err := applyPriority(log, prio); err != nil {
		return err
	}
	var rc *rest.Config
	if opts.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", opts.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return usageErr("Kubernetes client config: %v", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	g.applyMemoryLimit(0)
	reg, runs, storage, err := collectors.NewRegistry(version)
	if err != nil {
		return err
	}
	vm, err := collectors.NewVolumes(reg)
	if err != nil {
		return err
	}
	ropt, err := g.repoOptions(log)
	if err != nil {
		return err
	}
	cacheRoot := opts.StateDir + "/cache"
	if g.noCache {
		cacheRoot = ""
	}
	var iso *daemon.Isolation
	if opts.IsolateRuns {
		if iso, err = g.isolation(cacheRoot, storage); err != nil {
			return err
		}
	}
	servers := make(chan *exporter.Server, 1)
	a, err := agent.New(agent.Options{
		Clientset: cs, Dynamic: dyn, NodeName: opts.NodeName, Namespace: opts.Namespace, ClusterName: opts.ClusterName,
		Layout: agent.Layout{KubeletDir: opts.KubeletDir, HostRoot: opts.HostRoot}, StateDir: opts.StateDir, LeaseName: opts.LeaseName, Logger: log,
		Daemon: daemon.Options{Logger: log, Observer: runs, RepoOptions: ropt, Isolate: iso,
			RepoOptionsFor: func(rc config.Repository, o repository.Options) repository.Options {
				return location.RepositoryOptions(o, location.Spec{Location: rc.Path, Uploads: rc.Uploads}, cacheRoot)
			}},
		OpenBackend: func(ctx context.Context, rc config.Repository, spec location.Spec) (backend.Backend, error) {
			spec.Faults = ropt.Faults
			return location.Open(ctx, spec, location.Options{
				Logger:  log.With("repository", rc.Name),
				OnRetry: storage.RetryHook(rc.Name),
				Wrap:    func(be backend.Backend) backend.Backend { return storage.Wrap(rc.Name, be) },
			})
		},
		Metrics: vm,
		OnDaemon: func(d *daemon.Daemon) {
			servers <- exporter.New(reg, d, exporter.Options{ListenAddress: opts.ListenAddress, WebConfigFile: opts.WebConfigFile,
				ProbeAddress: opts.ProbeAddress, Version: version, Logger: log})
		},
		MaxConcurrent: opts.MaxConcurrent,
		Debounce:      opts.Debounce, StatusInterval: opts.StatusEvery, MaintenanceInterval: opts.Maintenance,
		RetainRetry: opts.RetainRetry, LockWait: opts.LockWait,
	})
	if err != nil {
		return usageErr("%v", err)
	}
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error {
		if err := a.Run(gctx); err != nil {
			return err
		}
		return context.Canceled // stop the exporter
	})
	grp.Go(func() error {
		// The exporter starts once the agent has built its daemon.
		select {
		case <-gctx.Done():
			return nil
		case srv := <-servers:
			return srv.Serve(gctx)
		}
	})
	err = waitStopped(ctx, log, grp.Wait, stopGrace)
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		log.Info("backupd agent stopped")
		return nil
	}
	return err
}
