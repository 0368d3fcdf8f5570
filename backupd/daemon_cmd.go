package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/bench/workload"
	"github.com/meshbackup/backupd/collectors"
	"github.com/meshbackup/backupd/exporter"
)

func configCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Work with daemon config files"}
	c.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a config file without running it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(args[0])
			if err != nil {
				return usageErr("%v", err)
			}
			fmt.Fprintf(g.stdout, "%s: ok: %d repositories, %d policies\n", args[0], len(cfg.Repositories), len(cfg.Policies))
			return nil
		},
	})
	return c
}

func runCommand(g *globalOptions) *cobra.Command {
	var cfgFile, listen, webConfig string
	var reloadEvery time.Duration
	c := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the daemon: scheduled backups, verification and restore drills, exported to Prometheus",
		Long: `Run every policy of the config on its schedule: a backup, then a verify
run and a restore drill when they are due. Metrics are served on
--web.listen-address (/metrics, /, /healthz, /readyz, /api/v1/status).

Signals: SIGTERM or SIGINT stop scheduling, interrupt a running run (its
stored packs are reused by the next backup) and exit 0. SIGHUP, or a change
of the config file, reloads the config; a bad new config is refused and the
old one kept.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if cfgFile == "" {
				return usageErr("--config is required")
			}
			cfg, err := config.Load(cfgFile)
			if err != nil {
				return usageErr("%v", err)
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
			d, err := daemon.New(cfg, daemon.Options{
				Logger: log, Observer: runs, RepoOptions: ropt,
				OpenBackend: func(rc config.Repository) (backend.Backend, error) {
					be, err := local.Open(rc.Path, local.Options{})
					if err != nil {
						return nil, err
					}
					return storage.Wrap(rc.Name, be), nil
				},
			})
			if err != nil {
				return err
			}
			srv := exporter.New(reg, d, exporter.Options{ListenAddress: listen, WebConfigFile: webConfig, Version: version, Logger: log})
			ctx := cmd.Context()
			reload := make(chan *config.Config)
			grp, gctx := errgroup.WithContext(ctx)
			grp.Go(func() error { return srv.Serve(gctx) })
			grp.Go(func() error { return watchConfig(gctx, log, cfgFile, reloadEvery, reload) })
			grp.Go(func() error {
				err := d.Run(gctx, reload)
				if err != nil {
					return err
				}
				return context.Canceled // stop the other goroutines
			})
			log.Info("backupd started", "config", cfgFile, "listen", listen, "policies", len(cfg.Policies), "version", version)
			err = grp.Wait()
			if ctx.Err() != nil || err == context.Canceled {
				log.Info("backupd stopped")
				return nil
			}
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&cfgFile, "config", "", "daemon config file (YAML, see deploy/CONFIG.md)")
	f.StringVar(&listen, "web.listen-address", "127.0.0.1:9847", "address to serve metrics and status on")
	f.StringVar(&webConfig, "web.config.file", "", "exporter-toolkit web config file for TLS and basic auth")
	f.DurationVar(&reloadEvery, "config.check-interval", 5*time.Second, "how often to look for changes of the config file")
	return c
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

func simulateCommand(g *globalOptions) *cobra.Command {
	var root string
	var opt workload.Options
	var every time.Duration
	c := &cobra.Command{
		Use:   "simulate --root DIR",
		Short: "Keep a generated mesh volume set changing like live proxies and Consul servers would",
		Long: `Generate a mesh volume set under --root (unless one is there) and apply one
step of activity every --interval: access logs appended and rotated, config
and stats dumps rewritten, certificates rotated, raft pages written. For
demos and tests; stops on SIGTERM or SIGINT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if root == "" {
				return usageErr("--root is required")
			}
			if _, err := os.Stat(root); os.IsNotExist(err) {
				if err := workload.Generate(root, opt); err != nil {
					return err
				}
				log.Info("generated a mesh volume set", "root", root)
			}
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-t.C:
					if err := workload.Mutate(root, opt, 1); err != nil {
						return err
					}
				}
			}
		},
	}
	f := c.Flags()
	f.StringVar(&root, "root", "", "directory of the volume set")
	f.IntVar(&opt.Proxies, "proxies", 20, "sidecar proxies")
	f.IntVar(&opt.ConsulServers, "consul", 3, "Consul servers")
	f.Float64Var(&opt.Scale, "scale", 0.1, "size multiplier of the big files")
	f.Uint64Var(&opt.Seed, "seed", 1, "seed of the generated content")
	f.DurationVar(&every, "interval", 10*time.Second, "time between activity steps")
	return c
}
