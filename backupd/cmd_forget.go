package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/prune"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// forgetOptions are forget's flags.
type forgetOptions struct {
	Filter snapshotFilter
	Keep   snapshot.KeepPolicy
	Prune  bool
	DryRun bool
	Grace  time.Duration
}

func newForgetCommand(g *globalOptions) *cobra.Command {
	var opts forgetOptions
	c := &cobra.Command{
		Use:   "forget --repo DIR [--policy NAME] --keep-last N ... [--prune]",
		Short: "Remove snapshots by a retention policy",
		Long: `Remove snapshots that no --keep-* rule keeps, separately for each
policy, source and host. The newest snapshot of each is always kept. Data
is freed by prune (--prune runs it afterwards).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runForget(cmd.Context(), opts, g, args)
		},
	}
	f := c.Flags()
	opts.Filter.flags(f, "only snapshots")
	f.IntVar(&opts.Keep.Last, "keep-last", 0, "keep the N newest snapshots")
	f.IntVar(&opts.Keep.Hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours")
	f.IntVar(&opts.Keep.Daily, "keep-daily", 0, "keep the newest snapshot of each of the last N days")
	f.IntVar(&opts.Keep.Weekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N weeks")
	f.IntVar(&opts.Keep.Monthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months")
	f.BoolVar(&opts.Prune, "prune", false, "run prune afterwards")
	f.BoolVarP(&opts.DryRun, "dry-run", "n", false, "only print what would be removed")
	f.DurationVar(&opts.Grace, "grace", 24*time.Hour, "with --prune: how long an unreferenced pack stays marked before deletion")
	return c
}

// forgetGroupJSON is one group in the --json output of forget.
type forgetGroupJSON struct {
	Policy string   `json:"policy"`
	Host   string   `json:"hostname"`
	Source string   `json:"source"`
	Keep   []string `json:"keep"`
	Remove []string `json:"remove"`
}

// runForget applies the keep policy, under the exclusive lock.
func runForget(ctx context.Context, opts forgetOptions, g *globalOptions, _ []string) error {
	k := opts.Keep
	if k.Empty() {
		return usageErr("give at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly")
	}
	if k.Last < 0 || k.Hourly < 0 || k.Daily < 0 || k.Weekly < 0 || k.Monthly < 0 {
		return usageErr("--keep-* values must not be negative")
	}
	if err := nonNegative("grace", opts.Grace); err != nil {
		return err
	}
	if err := checkHostAndTags(opts.Filter.Host, opts.Filter.Tags); err != nil {
		return err
	}
	r, log, lock, err := g.openExclusive(ctx, "forget")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	ropt := prune.RetentionOptions{Keep: k, DryRun: opts.DryRun, Prune: opts.Prune, PruneOptions: prune.Options{Grace: opts.Grace}}
	ropt.Select = opts.Filter.match
	res, err := prune.Forget(lock.Context(), r, ropt)
	if res != nil {
		for id, err := range res.Unreadable {
			log.Warn("unreadable snapshot left alone", "snapshot", id.Str(), "err", err)
		}
		if perr := printForget(g, res); perr != nil && err == nil {
			err = perr
		}
	}
	return err
}

func printForget(g *globalOptions, res *prune.ForgetResult) error {
	groups := []forgetGroupJSON{}
	for _, gr := range res.Groups {
		j := forgetGroupJSON{Policy: gr.Policy, Host: gr.Hostname, Source: gr.Source, Keep: shortIDs(gr.Keep), Remove: shortIDs(gr.Remove)}
		groups = append(groups, j)
	}
	if g.json {
		if err := g.printJSON(groups); err != nil {
			return err
		}
	} else {
		for _, j := range groups {
			fmt.Fprintf(g.stdout, "policy %s, %s:%s: keep %d, remove %d %v\n", escape(j.Policy), escape(j.Host), escape(j.Source), len(j.Keep), len(j.Remove), j.Remove)
		}
	}
	if res.Plan != nil {
		return printPrune(g, res.Plan)
	}
	return nil
}

func shortIDs(snaps []*snapshot.Snapshot) []string {
	out := make([]string, 0, len(snaps))
	for _, s := range snaps {
		out = append(out, s.ID.Str())
	}
	return out
}
