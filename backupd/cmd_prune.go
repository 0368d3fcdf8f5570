package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/prune"
	"github.com/meshbackup/backupd/internal/units"
)

// pruneOptions are prune's flags.
type pruneOptions struct {
	Grace time.Duration
}

func newPruneCommand(g *globalOptions) *cobra.Command {
	var opts pruneOptions
	c := &cobra.Command{
		Use:   "prune --repo DIR [--grace DURATION]",
		Short: "Delete packs no snapshot needs (two-phase, with a grace period)",
		Long: `Mark packs that no snapshot references; delete packs marked at least
--grace ago that are still unreferenced. The grace period must exceed the
longest backup, so an interrupted backup's packs survive until it resumes.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPrune(cmd.Context(), opts, g, args)
		},
	}
	c.Flags().DurationVar(&opts.Grace, "grace", 24*time.Hour, "how long an unreferenced pack stays marked before deletion")
	return c
}

// runPrune prunes under the exclusive lock.
func runPrune(ctx context.Context, opts pruneOptions, g *globalOptions, _ []string) error {
	if err := nonNegative("grace", opts.Grace); err != nil {
		return err
	}
	r, _, lock, err := g.openExclusive(ctx, "prune")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	plan, err := prune.Prune(lock.Context(), r, prune.Options{Grace: opts.Grace})
	if err != nil {
		return err
	}
	return printPrune(g, plan)
}

func printPrune(g *globalOptions, plan *prune.Plan) error {
	if g.json {
		return g.printJSON(map[string]any{"marked": len(plan.Mark), "deleted": len(plan.Delete), "waiting": len(plan.Waiting), "deleted_bytes": plan.DeleteBytes})
	}
	fmt.Fprintf(g.stdout, "prune: %d packs newly marked, %d deleted (%s), %d waiting for the grace period\n",
		len(plan.Mark), len(plan.Delete), units.Bytes(plan.DeleteBytes), len(plan.Waiting))
	return nil
}
