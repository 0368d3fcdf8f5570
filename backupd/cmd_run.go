package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/budget"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/collectors"
	"github.com/meshbackup/backupd/exporter"
)

// runOptions are the daemon's flags.
type runOptions struct {
	ConfigFile    string
	ListenAddress string
	WebConfigFile string
	ProbeAddress  string
	CheckInterval time.Duration
	IsolateRuns   bool
	MaxConcurrent int
}

func newRunCommand(g *globalOptions) *cobra.Command {
	var opts runOptions
	c := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the daemon: scheduled backups, verification and restore drills, exported to Prometheus",
		Long: `Run every policy of the config on its schedule: a backup, then a verify
run and a restore drill when they are due. Metrics are served on
--web.listen-address (/metrics, /, /healthz, /readyz, /api/v1/status), and
the probes alone on --web.probe-address when it is set.

Signals: SIGTERM or SIGINT stop scheduling, interrupt a running run (its
stored packs are reused by the next backup) and exit 0 within 30 seconds (a
run not stopped by then is abandoned and counted as interrupted at the next
start). SIGHUP, or a change
of the config file, reloads the config; a bad new config is refused and the
old one kept.

With --isolate-runs each backup runs in a child process of this binary:
its CPU seconds, peak RSS and I/O are its own even when --max-concurrent
lets runs overlap, and a crash of the backup (a panic, an out-of-memory
kill) fails that run (reason "crashed") instead of ending the daemon; the
next backup needs no unlock. On SIGTERM a child gets SIGTERM, and SIGKILL
20 seconds later. Verify runs, scrubs and drills run in the daemon.

Priority: the daemon runs at nice 10 and I/O class best-effort 7 (every
thread), unless the config's scheduler.priority says otherwise ("off"
changes nothing); it never raises a priority it was started with. A
reload does not change it. Policies may also limit their backups' source
reads and CPU (budget: {read_rate, cpu}); see deploy/CONFIG.md.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDaemon(cmd.Context(), opts, g, args)
		},
	}
	f := c.Flags()
	f.StringVar(&opts.ConfigFile, "config", "", "daemon config file (YAML, see deploy/CONFIG.md)")
	f.StringVar(&opts.ListenAddress, "web.listen-address", "127.0.0.1:9847", "address to serve metrics and status on")
	f.StringVar(&opts.WebConfigFile, "web.config.file", "", "exporter-toolkit web config file for TLS and basic auth (they cover /healthz and /readyz too)")
	f.StringVar(&opts.ProbeAddress, "web.probe-address", "", "also serve /healthz and /readyz here, in plain HTTP without authentication (for a kubelet's probes when basic auth or client certificates are on)")
	f.DurationVar(&opts.CheckInterval, "config.check-interval", 5*time.Second, "how often to look for changes of the config file")
	f.BoolVar(&opts.IsolateRuns, "isolate-runs", false, "run each backup in a child process: its own CPU, RSS and I/O figures, and a crash of it does not end the daemon")
	f.IntVar(&opts.MaxConcurrent, "max-concurrent", 1, "how many runs of different policies may go at once; above 1, only backups with --isolate-runs keep their CPU, RSS and I/O figures their own")
	return c
}

// runDaemon runs the daemon until ctx ends (SIGTERM, SIGINT): nil then.
func runDaemon(ctx context.Context, opts runOptions, g *globalOptions, _ []string) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	if opts.ConfigFile == "" {
		return usageErr("--config is required")
	}
	for _, f := range []string{"s3-path-style", "s3-ca-file", "s3-insecure-skip-verify", "storage-timeout", "storage-retry-for", "uploads"} {
		if g.given(f) {
			return usageErr("--%s applies to --repo; the daemon takes it per repository from its config (deploy/CONFIG.md)", f)
		}
	}
	if opts.CheckInterval <= 0 {
		return usageErr("--config.check-interval %s: want a positive duration", opts.CheckInterval)
	}
	if opts.MaxConcurrent < 1 {
		return usageErr("--max-concurrent %d: want 1 or more", opts.MaxConcurrent)
	}
	cfg, err := config.Load(opts.ConfigFile)
	if err != nil {
		return usageErr("%v", err)
	}
	if err := applyPriority(log, cfg.Scheduler.Priority); err != nil {
		return err
	}
	for _, f := range config.CheckPaths(cfg) {
		log.Warn("config names a path that will not work as it stands", "config", opts.ConfigFile, "finding", f.String())
	}
	g.applyMemoryLimit(0)
	reg, runs, storage, err := collectors.NewRegistry(version)
	if err != nil {
		return err
	}
	ropt, err := g.repoOptions(log)
	if err != nil {
		return err
	}
	var iso *daemon.Isolation
	if opts.IsolateRuns {
		if iso, err = g.isolation(g.cacheRoot(), storage); err != nil {
			return err
		}
	}
	d, err := daemon.New(cfg, daemon.Options{
		Logger: log, Observer: runs, RepoOptions: ropt,
		OpenBackend: daemonBackend(log, storage, ropt.Faults),
		RepoOptionsFor: func(rc config.Repository, o repository.Options) repository.Options {
			return location.RepositoryOptions(o, location.Spec{Location: rc.Path, Uploads: rc.Uploads}, g.cacheRoot())
		},
		MaxRuns: opts.MaxConcurrent,
		Isolate: iso,
	})
	if err != nil {
		return err
	}
	srv := exporter.New(reg, d, exporter.Options{ListenAddress: opts.ListenAddress, WebConfigFile: opts.WebConfigFile,
		ProbeAddress: opts.ProbeAddress, Version: version, Logger: log})
	reload := make(chan *config.Config)
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error { return srv.Serve(gctx) })
	grp.Go(func() error { return watchConfig(gctx, log, opts.ConfigFile, opts.CheckInterval, reload) })
	grp.Go(func() error {
		err := d.Run(gctx, reload)
		if err != nil {
			return err
		}
		return context.Canceled // stop the other goroutines
	})
	log.Info("backupd started", "config", opts.ConfigFile, "listen", opts.ListenAddress, "policies", len(cfg.Policies),
		"isolate_runs", opts.IsolateRuns, "max_concurrent", opts.MaxConcurrent, "version", version)
	err = waitStopped(ctx, log, grp.Wait, stopGrace)
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		log.Info("backupd stopped")
		return nil
	}
	return err
}

// applyPriority sets the daemon's CPU and I/O priority on every thread of
// the process (docs/DESIGN.md §3.9), before it starts its work.
func applyPriority(log *slog.Logger, p budget.Priority) error {
	threads, err := budget.Apply(p)
	if err != nil {
		return fmt.Errorf("scheduler.priority %s: %w", p, err)
	}
	if p != budget.Off {
		log.Info("running at low priority", "nice", p.Nice, "io_class", p.IOString(), "cpu_class", p.CPUString(), "threads", threads)
	}
	return nil
}

// daemonBackend opens a config's repository through backend/location
// (retries counted by the storage metrics, the armed fault points of crash
// tests passed on) and meters it, outermost.
func daemonBackend(log *slog.Logger, storage *collectors.Storage, faults *faultpoint.Set) func(context.Context, config.Repository) (backend.Backend, error) {
	return func(ctx context.Context, rc config.Repository) (backend.Backend, error) {
		spec, err := location.FromConfig(rc)
		if err != nil {
			return nil, err
		}
		spec.Faults = faults
		return location.Open(ctx, spec, location.Options{
			Logger:  log.With("repository", rc.Name),
			OnRetry: storage.RetryHook(rc.Name),
			Wrap:    func(be backend.Backend) backend.Backend { return storage.Wrap(rc.Name, be) },
		})
	}
}

// stopGrace bounds how long the daemon takes to exit after SIGTERM or
// SIGINT (README "The daemon", docs/DESIGN.md §3.6). The running run is
// cancelled at once (a backup in a child process, --isolate-runs, gets
// SIGTERM, and SIGKILL after daemon.Isolation.Grace, 20 s): a backup stops
// at its next chunk or directory and
// indexes the packs it stored (at most 10 s, archiver.checkpoint), a verify
// or drill at its next blob or file, and the run's record is written.
// Nothing a run opens waits on a FIFO or device put in a file's place
// (docs/DESIGN.md §8 scenario 38). A run still going when the grace has
// passed (stuck where cancellation cannot reach it: a read hung in the
// kernel on a dead network file system) is abandoned, logged with
// stopGraceMsg: the daemon exits 0 without it, and the run is counted as
// interrupted at the next start, as after SIGKILL.
const stopGrace = 30 * time.Second

const stopGraceMsg = "the running run did not stop within the grace period after the signal; exiting without it (it is counted as interrupted at the next start)"

// waitStopped returns what wait returns, or, once grace has passed since
// ctx ended (the stopping signal) without wait returning, ctx's error.
func waitStopped(ctx context.Context, log *slog.Logger, wait func() error, grace time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		log.Error(stopGraceMsg, "grace", grace)
		return ctx.Err()
	}
}

// watchConfig sends a new config on SIGHUP or when the file changes. A bad
// config is logged and not sent.
func watchConfig(ctx context.Context, log *slog.Logger, file string, every time.Duration, out chan<- *config.Config) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	stamp := func() string {
		fi, err := os.Stat(file)
		if err != nil {
			return ""
		}
		return fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
	}
	last := stamp()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
		case <-t.C:
			if s := stamp(); s == last {
				continue
			}
		}
		last = stamp()
		cfg, err := config.Load(file)
		if err != nil {
			log.Error("config not reloaded; keeping the running config", "err", err)
			continue
		}
		select {
		case out <- cfg:
		case <-ctx.Done():
			return nil
		}
	}
}
