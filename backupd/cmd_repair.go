package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

func newRepairCommand(g *globalOptions) *cobra.Command {
	c := &cobra.Command{
		Use:   "repair (index|snapshots)",
		Short: "Repair a damaged repository: rebuild the index, rewrite snapshots that lost data",
		Long: `Repair what check found damaged, under the exclusive lock. The steps that
cure lost or damaged data (alerts/runbooks.md, BackupdRepositoryCorruption):

  backupd check --read-data     find the damage and record it (damaged/)
  backupd repair index          rebuild the index from the packs that are intact
  backupd backup ...            store again, from the source, what it still holds
  backupd repair snapshots      rewrite snapshots that still refer to lost data
  backupd check                 expect no problems`,
	}
	unknownSubcommand(c)
	c.AddCommand(newRepairIndexCommand(g), newRepairSnapshotsCommand(g))
	return c
}

// repairIndexOptions are repair index's flags.
type repairIndexOptions struct {
	ReadData bool
}

func newRepairIndexCommand(g *globalOptions) *cobra.Command {
	var opts repairIndexOptions
	c := &cobra.Command{
		Use:   "index --repo DIR [--read-data]",
		Short: "Rebuild the index from the packs that are stored and readable",
		Long: `Rebuild the index from the packs: each pack's sealed trailer lists its
blobs. Packs that are missing, blobs recorded damaged (by check or a verify
run) and, with --read-data, blobs that fail their read-back are left out;
packs no index listed (an index file lost or damaged) are indexed again.
The intact blobs of a pack whose trailer is damaged are stored again in new
packs. The new index is written before the old index files are removed, so
a kill at any point leaves a usable repository; rerun to finish.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepairIndex(cmd.Context(), opts, g, args)
		},
	}
	c.Flags().BoolVar(&opts.ReadData, "read-data", false, "read every pack back and leave out blobs that fail (slower)")
	return c
}

// runRepairIndex rebuilds the index under the exclusive lock.
func runRepairIndex(ctx context.Context, opts repairIndexOptions, g *globalOptions, _ []string) error {
	g.noCache = true // as check: the store's copies, not the cache's
	r, _, lock, err := g.openExclusive(ctx, "repair index")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	ropt := repository.RebuildOptions{ReadData: opts.ReadData}
	var clearLine func()
	ropt.Progress, clearLine = g.countProgress("pack %d of %d")
	res, err := r.RebuildIndex(lock.Context(), ropt)
	clearLine()
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(res)
	}
	for _, p := range res.DroppedPacks {
		fmt.Fprintf(g.stdout, "dropped pack %s (%s): %d blobs the old index listed, %d stored again\n", p.Pack.Str(), p.Reason, p.Blobs, p.Salvaged)
	}
	for _, b := range res.DroppedBlobs {
		fmt.Fprintf(g.stdout, "dropped blob %s of pack %s: %s\n", b.ID.Str(), b.Pack.Str(), escape(b.Reason))
	}
	if res.DamageRecorded != "" {
		fmt.Fprintf(g.stdout, "recorded the newly lost data in %s\n", res.DamageRecorded)
	}
	if !g.quiet {
		fmt.Fprintf(g.stdout, "indexed %d of %d packs (%d not indexed before), %d blobs; removed %d old index files\n",
			res.PacksIndexed, res.Packs, res.NewlyIndexed, res.BlobsIndexed, len(res.IndexRemoved))
	}
	if len(res.DroppedPacks)+len(res.DroppedBlobs) > 0 && !g.quiet {
		fmt.Fprintln(g.stdout, "next: back up each affected source, then run 'backupd repair snapshots'")
	}
	return nil
}

// repairSnapshotsOptions are repair snapshots' flags.
type repairSnapshotsOptions struct {
	RemoveDamaged bool
	DryRun        bool
}

func newRepairSnapshotsCommand(g *globalOptions) *cobra.Command {
	var opts repairSnapshotsOptions
	c := &cobra.Command{
		Use:   "snapshots --repo DIR [--remove-damaged-files] [--dry-run]",
		Short: "Rewrite snapshots that refer to lost data",
		Long: `Rewrite every snapshot that refers to data the repository has lost (blobs
no index lists, or that check recorded damaged, and trees that cannot be
read). By default a damaged file is kept, truncated before its first lost
chunk, and listed in the new snapshot's "repaired" record; a directory
whose tree is lost is kept empty. --remove-damaged-files leaves them out
instead. A rewritten snapshot is a new snapshot, with the original's
policy, host, source, sequence number and time, written before the
original is removed. Run it after 'repair index' and a backup of each
affected source, which stores again what the source still holds.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepairSnapshots(cmd.Context(), opts, g, args)
		},
	}
	f := c.Flags()
	f.BoolVar(&opts.RemoveDamaged, "remove-damaged-files", false, "leave damaged files out of the rewritten snapshots instead of truncating them")
	f.BoolVarP(&opts.DryRun, "dry-run", "n", false, "only report what would be rewritten")
	return c
}

// runRepairSnapshots rewrites snapshots that refer to lost data, under the
// exclusive lock.
func runRepairSnapshots(ctx context.Context, opts repairSnapshotsOptions, g *globalOptions, _ []string) error {
	g.noCache = true // as check: the store's copies, not the cache's
	r, _, lock, err := g.openExclusive(ctx, "repair snapshots")
	if err != nil {
		return err
	}
	defer lock.Unlock()
	lctx := lock.Context()
	if err := r.LoadIndex(lctx); err != nil {
		return err
	}
	res, err := snapshot.Repair(lctx, r, snapshot.RepairOptions{Remove: opts.RemoveDamaged, DryRun: opts.DryRun})
	if err != nil {
		return err
	}
	if g.json {
		for i := range res.Rewritten {
			res.Rewritten[i].Files = nonNil(res.Rewritten[i].Files)
		}
		return g.printJSON(res)
	}
	verb := "rewrote"
	if opts.DryRun {
		verb = "would rewrite"
	}
	for _, s := range res.Rewritten {
		if opts.DryRun {
			fmt.Fprintf(g.stdout, "%s snapshot %s (policy %s, seq %d)\n", verb, s.Original.Str(), escape(s.Policy), s.Seq)
		} else {
			fmt.Fprintf(g.stdout, "%s snapshot %s as %s (policy %s, seq %d)\n", verb, s.Original.Str(), s.Replacement.Str(), escape(s.Policy), s.Seq)
		}
		for _, f := range s.Files {
			fmt.Fprintf(g.stdout, "  %s %s (%d lost blobs)\n", f.Action, escape(f.Path), f.LostBlobs)
		}
	}
	for id, e := range res.Unreadable {
		fmt.Fprintf(g.stdout, "warning: snapshot %s is unreadable, left alone: %s\n", id[:8], escape(e))
	}
	if !g.quiet {
		fmt.Fprintf(g.stdout, "%d snapshots checked, %d %s\n", res.Snapshots, len(res.Rewritten), map[bool]string{true: "to rewrite", false: "rewritten"}[opts.DryRun])
	}
	return nil
}
