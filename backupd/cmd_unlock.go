package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// unlockOptions are unlock's flags.
type unlockOptions struct {
	Force bool
}

func newUnlockCommand(g *globalOptions) *cobra.Command {
	var opts unlockOptions
	c := &cobra.Command{
		Use:   "unlock --repo DIR [--force]",
		Short: "Remove stale locks (with --force, every lock)",
		Long: `Remove the locks whose lease ran out (not renewed for 5 minutes), whose
holder on this host is gone, or that are dated further in the future than
the allowed clock skew (5 minutes). Live locks are kept unless --force is
given: only use it when the holders are known to be gone, since removing a
live holder's lock lets others run beside it until it notices. Prints the
locks removed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnlock(cmd.Context(), opts, g, args)
		},
	}
	c.Flags().BoolVar(&opts.Force, "force", false, "remove every lock, live ones included")
	return c
}

// unlockJSON is one removed lock in unlock's --json output.
type unlockJSON struct {
	Name      string    `json:"name"`
	Exclusive bool      `json:"exclusive"`
	Hostname  string    `json:"hostname"`
	PID       int       `json:"pid"`
	Command   string    `json:"command"`
	Time      time.Time `json:"time"`
	Stale     bool      `json:"stale"`
}

// runUnlock removes stale locks, or all with --force.
func runUnlock(ctx context.Context, opts unlockOptions, g *globalOptions, _ []string) error {
	r, _, err := g.open(ctx)
	if err != nil {
		return err
	}
	removed, err := r.RemoveLocks(ctx, opts.Force)
	out := []unlockJSON{}
	for _, l := range removed {
		out = append(out, unlockJSON{Name: l.Name, Exclusive: l.Info.Exclusive, Hostname: l.Info.Hostname, PID: l.Info.PID,
			Command: l.Info.Command, Time: l.Info.Time, Stale: l.Stale})
	}
	if g.json {
		if perr := g.printJSON(out); perr != nil && err == nil {
			err = perr
		}
		return err
	}
	for _, l := range out {
		state := "live"
		if l.Stale {
			state = "stale"
		}
		fmt.Fprintf(g.stdout, "removed %s lock locks/%s of %s (pid %d, command %q, renewed %s)\n", state, l.Name, escape(l.Hostname), l.PID, escape(l.Command), l.Time.UTC().Format(time.RFC3339))
	}
	if err == nil && !g.quiet {
		fmt.Fprintf(g.stdout, "removed %d locks\n", len(out))
	}
	return err
}
