// Command simulate keeps a generated mesh volume set changing the way live
// proxies and Consul servers would, for demos (make run) and tests. It is
// not part of backupd: the production binary does not import the workload
// generator.
//
//	simulate -root DIR [-proxies N] [-consul N] [-scale F] [-seed S] [-interval D]
//
// If DIR does not exist, a volume set is generated there first. Then one
// step of activity is applied every -interval: access logs appended and
// rotated, config and stats dumps rewritten, certificates rotated, raft
// pages written. It stops on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/meshbackup/backupd/bench/workload"
)

func main() {
	var root string
	var opt workload.Options
	var every time.Duration
	flag.StringVar(&root, "root", "", "directory of the volume set (required)")
	flag.IntVar(&opt.Proxies, "proxies", 20, "sidecar proxies")
	flag.IntVar(&opt.ConsulServers, "consul", 3, "Consul servers")
	flag.Float64Var(&opt.Scale, "scale", 0.1, "size multiplier of the big files")
	flag.Uint64Var(&opt.Seed, "seed", 1, "seed of the generated content")
	flag.DurationVar(&every, "interval", 10*time.Second, "time between activity steps")
	flag.Parse()
	if root == "" || flag.NArg() > 0 || every <= 0 {
		fmt.Fprintln(os.Stderr, "simulate: -root is required, -interval must be positive, and no arguments are taken")
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := simulate(ctx, log, root, opt, every); err != nil {
		fmt.Fprintln(os.Stderr, "simulate:", err)
		os.Exit(1)
	}
}

// simulate generates the set under root unless it exists, then mutates it
// one step every interval until ctx ends.
func simulate(ctx context.Context, log *slog.Logger, root string, opt workload.Options, every time.Duration) error {
	if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
		if err := workload.Generate(root, opt); err != nil {
			return fmt.Errorf("generate %s: %w", root, err)
		}
		log.Info("generated a mesh volume set", "root", root)
	} else if err != nil {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := workload.Mutate(root, opt, 1); err != nil {
				return fmt.Errorf("mutate %s: %w", root, err)
			}
		}
	}
}
