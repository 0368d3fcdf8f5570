package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/internal/units"
)

// snapshotsOptions are snapshots' flags.
type snapshotsOptions struct {
	Filter snapshotFilter
}

// snapshotJSON is one snapshot in the --json output of snapshots.
type snapshotJSON struct {
	ID       string          `json:"id"`
	Short    string          `json:"short_id"`
	Seq      uint64          `json:"seq"`
	Time     time.Time       `json:"time"`
	Policy   string          `json:"policy"`
	Source   string          `json:"source"`
	Hostname string          `json:"hostname"`
	Tags     []string        `json:"tags,omitempty"`
	Parent   string          `json:"parent,omitempty"`
	Totals   snapshot.Totals `json:"totals"`
	Suspect  string          `json:"suspect,omitempty"`
	// Damaged is set for a snapshot that cannot be read; Error says why.
	Damaged bool   `json:"damaged,omitempty"`
	Error   string `json:"error,omitempty"`
}

func toJSON(s *snapshot.Snapshot) snapshotJSON {
	j := snapshotJSON{ID: s.ID.String(), Short: s.ID.Str(), Seq: s.Seq, Time: s.Time, Policy: s.Policy,
		Source: s.Source, Hostname: s.Hostname, Tags: s.Tags, Totals: s.Totals, Suspect: s.Suspect}
	if s.Parent != nil {
		j.Parent = s.Parent.String()
	}
	return j
}

func newSnapshotsCommand(g *globalOptions) *cobra.Command {
	var opts snapshotsOptions
	c := &cobra.Command{
		Use:   "snapshots --repo DIR [--policy NAME] [--json]",
		Short: "List snapshots",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshots(cmd.Context(), opts, g, args)
		},
	}
	opts.Filter.flags(c.Flags(), "only snapshots")
	return c
}

// runSnapshots lists the repository's snapshots, oldest first.
func runSnapshots(ctx context.Context, opts snapshotsOptions, g *globalOptions, _ []string) error {
	r, log, err := g.open(ctx)
	if err != nil {
		return err
	}
	snaps, bad, err := snapshot.LoadAll(ctx, r)
	if err != nil {
		return err
	}
	out := []snapshotJSON{}
	for _, s := range snaps {
		if opts.Filter.match(s) {
			out = append(out, toJSON(s))
		}
	}
	// A damaged snapshot's policy is unknown: it is listed whatever the
	// filter, after the readable ones.
	damaged := make([]snapshotJSON, 0, len(bad))
	for id, err := range bad {
		log.Warn("unreadable snapshot", "snapshot", id.Str(), "err", err)
		damaged = append(damaged, snapshotJSON{ID: id.String(), Short: id.Str(), Damaged: true, Error: err.Error()})
	}
	slices.SortFunc(damaged, func(a, b snapshotJSON) int { return strings.Compare(a.ID, b.ID) })
	out = append(out, damaged...)
	if g.json {
		if err := g.printJSON(out); err != nil {
			return err
		}
	} else if err := printSnapshotTable(g, out); err != nil {
		return err
	}
	if len(bad) > 0 {
		return &exitError{code: exitCorrupt, err: fmt.Errorf("%d snapshots unreadable: run backupd check", len(bad))}
	}
	return nil
}

func printSnapshotTable(g *globalOptions, out []snapshotJSON) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSEQ\tTIME\tPOLICY\tHOST\tTAGS\tSOURCE\tFILES\tSIZE")
	for _, s := range out {
		if s.Damaged {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\tdamaged: %s\t-\t-\n", s.Short, escape(s.Error))
			continue
		}
		tags := strings.Join(s.Tags, ",")
		if tags == "" {
			tags = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Short, s.Seq, s.Time.Local().Format("2006-01-02 15:04:05"),
			escape(s.Policy), escape(s.Hostname), escape(tags), escape(s.Source), s.Totals.Files, units.Bytes(s.Totals.BytesTotal))
	}
	return tw.Flush()
}
