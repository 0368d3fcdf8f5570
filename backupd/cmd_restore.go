package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/internal/units"
)

// restoreOptions are restore's flags.
type restoreOptions struct {
	Filter snapshotFilter
	Target string
	Delete bool
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	var opts restoreOptions
	c := &cobra.Command{
		Use:   "restore --repo DIR [--policy NAME] --target DIR (SNAPSHOT-ID|latest)",
		Short: "Restore a snapshot into a directory",
		Long: `Restore a snapshot so that the target's contents equal the backed-up
directory's: files, directories, symlinks, modes, times (and owners when
run as root). Every chunk is authenticated and checked against its id, and
every file against its recorded content hash, before it is renamed into
place; a file whose data is corrupt is not written and is named in the
error. Rerunning a restore is safe and only writes what is missing.
The target directory itself takes the backed-up directory's mode, owner and
mtime when this restore (or an interrupted run of it) created it, or when
it was empty and neither sticky nor writable by all; a target that held
anything else keeps its own.`,
		Args: exactArgs(1, "one SNAPSHOT-ID or latest"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestore(cmd.Context(), opts, g, args)
		},
	}
	f := c.Flags()
	opts.Filter.flags(f, "with 'latest': the newest snapshot")
	f.StringVarP(&opts.Target, "target", "t", "", "directory to restore into (required)")
	f.BoolVar(&opts.Delete, "delete", false, "remove files in the target that the snapshot does not hold")
	return c
}

// runRestore restores the snapshot args[0] names into opts.Target.
func runRestore(ctx context.Context, opts restoreOptions, g *globalOptions, args []string) error {
	if len(args) != 1 {
		return usageErr("restore takes exactly one SNAPSHOT-ID or latest, got %d arguments", len(args))
	}
	if opts.Target == "" {
		return usageErr("--target is required")
	}
	if err := snapshot.CheckRef(args[0]); err != nil {
		return usageErr("%v", err) // before anything is opened
	}
	if err := g.requireRepo(); err != nil {
		return err
	}
	if err := targetOutsideRepo(opts.Target, g.repo); err != nil {
		return err
	}
	ropt := restorer.Options{Delete: opts.Delete}
	// The soft memory limit, set once the index is loaded, leaves room
	// for the read-ahead and the file workers' chunks.
	g.memoryExtra = ropt.Memory()
	r, log, err := g.open(ctx)
	if err != nil {
		return err
	}
	if err := r.LoadIndex(ctx); err != nil {
		return err
	}
	snaps, bad, err := snapshot.LoadAll(ctx, r)
	if err != nil {
		return err
	}
	sn, err := snapshot.Find(slices.DeleteFunc(snaps, func(s *snapshot.Snapshot) bool { return !opts.Filter.match(s) }), bad, args[0], opts.Filter.Policy)
	if err != nil {
		return err
	}
	ropt.Logger, ropt.Faults = log, r.Faults()
	rs := restorer.New(r, ropt)
	start := time.Now()
	stopProgress := g.showProgress(func() string {
		return fmt.Sprintf("restored %d files, %s", rs.Stats.Files.Load(), units.Bytes(rs.Stats.Bytes.Load()))
	})
	res, err := rs.Restore(ctx, sn, opts.Target)
	stopProgress()
	if err != nil {
		return err
	}
	sum := map[string]any{
		"snapshot_id": sn.ID.String(), "target": opts.Target,
		"files_restored": rs.Stats.Files.Load(), "files_unchanged": rs.Stats.Unchanged.Load(),
		"dirs": rs.Stats.Dirs.Load(), "symlinks": rs.Stats.Symlinks.Load(), "skipped": rs.Stats.Skipped.Load(),
		"bytes_written": rs.Stats.Bytes.Load(), "duration_seconds": time.Since(start).Seconds(),
		"failed": len(res.Failed),
	}
	failed := []string{}
	for _, f := range res.Failed {
		failed = append(failed, escape(f.Error()))
	}
	if g.json {
		sum["failures"] = failed
		if err := g.printJSON(sum); err != nil {
			return err
		}
	} else if !g.quiet && len(failed) == 0 {
		fmt.Fprintf(g.stdout, "restored snapshot %s to %s: %d files written, %d already present, %s in %.2fs\n",
			sn.ID.Str(), escape(opts.Target), rs.Stats.Files.Load(), rs.Stats.Unchanged.Load(), units.Bytes(rs.Stats.Bytes.Load()), time.Since(start).Seconds())
	}
	if len(res.Failed) > 0 {
		code := exitFailed
		if res.Corrupt() {
			code = exitCorrupt
		}
		return &exitError{code: code, err: fmt.Errorf("%d files not restored:\n  %s", len(failed), strings.Join(failed, "\n  "))}
	}
	return nil
}

// targetOutsideRepo refuses a restore target that holds the repository or
// lies inside it: restoring there (with --delete above all) would destroy
// the repository being read.
func targetOutsideRepo(target, repo string) error {
	if location.IsS3(repo) {
		return nil // a bucket is in no directory
	}
	t, err := resolvePath(target)
	if err != nil {
		return fmt.Errorf("--target %s: %w", escape(target), err)
	}
	r, err := resolvePath(repo)
	if err != nil {
		return fmt.Errorf("repository %s: %w", escape(repo), err)
	}
	switch {
	case within(r, t):
		return usageErr("--target %s lies inside the repository %s: choose a target outside it", escape(target), escape(repo))
	case within(t, r):
		return usageErr("--target %s contains the repository %s: restoring there could overwrite or delete it; choose a target that does not hold it", escape(target), escape(repo))
	}
	return nil
}

// resolvePath returns p as an absolute path with the symlinks of its
// longest existing prefix resolved (the rest may not exist yet).
func resolvePath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for dir := abs; ; {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return abs, nil
		}
		rest = append([]string{filepath.Base(dir)}, rest...)
		dir = parent
	}
}

// within reports whether path is dir or lies below it (both clean and
// absolute).
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
