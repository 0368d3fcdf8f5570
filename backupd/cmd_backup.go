package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend/location"
	"github.com/meshbackup/backupd/backupd/budget"
	"github.com/meshbackup/backupd/internal/units"
)

// backupOptions are backup's flags.
type backupOptions struct {
	Policy           string
	AppendOnly       []string
	FullReadEvery    int
	FullWalkEvery    int
	AllowEmptySource bool
	MaxShrink        float64
	Host             string
	Tags             []string
	Exclude          []string
	OneFileSystem    bool
	ReadRate         string
	CPULimit         float64
}

// backupSummary is the --json output of backup.
type backupSummary struct {
	SnapshotID     string  `json:"snapshot_id"`
	Policy         string  `json:"policy"`
	Source         string  `json:"source"`
	Seq            uint64  `json:"seq"`
	FilesNew       uint64  `json:"files_new"`
	FilesChanged   uint64  `json:"files_changed"`
	FilesUnchanged uint64  `json:"files_unchanged"`
	FilesSkipped   uint64  `json:"files_skipped"`
	Dirs           uint64  `json:"dirs"`
	DirsReused     uint64  `json:"dirs_reused"`    // taken whole from the parent by their scan digest
	SilentChanges  uint64  `json:"silent_changes"` // content changed behind unchanged metadata, found by a periodic full read
	Errors         uint64  `json:"errors"`
	BytesTotal     uint64  `json:"bytes_total"`
	BytesRead      uint64  `json:"bytes_read"`
	BytesWritten   uint64  `json:"bytes_written"`
	DurationSec    float64 `json:"duration_seconds"`
	// Suspect says why the snapshot may not hold the policy's real data
	// (docs/DESIGN.md §8 scenario 34); retention keeps the newest one
	// that is not suspect.
	Suspect string `json:"suspect,omitempty"`
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	var opts backupOptions
	c := &cobra.Command{
		Use:   "backup --repo DIR --policy NAME [--json] PATH",
		Short: "Back up a directory as a new snapshot of a policy",
		Long: `Back up PATH as a new snapshot of --policy. Unchanged files (same inode,
size, mtime and ctime as in the policy's previous snapshot of PATH) are not
read again. Files matching --append-only that only grew are checked by
re-hashing their old last chunk, and then only what was appended is read;
the --full-read-every'th backup after their last full read re-reads them
whole and re-hashes every old chunk, changed or not. Files renamed within
their directory are matched to their old version by inode. A directory
whose entries, and everything below them, have the same names and metadata
as when the previous snapshot was made is taken from it whole; every
--full-walk-every'th backup of a policy checks every file again.

--read-rate and --cpu-limit keep the backup's impact on the host down: the
source is read at most that fast (a backup reading N bytes takes at least
N / rate), and the process uses at most that many cores on average.`,
		Args: exactArgs(1, "one PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBackup(cmd.Context(), opts, g, args)
		},
	}
	f := c.Flags()
	f.StringVarP(&opts.Policy, "policy", "p", "", "policy name (required)")
	f.StringSliceVar(&opts.AppendOnly, "append-only", archiver.DefaultAppendOnly, "name patterns of append-only files (tail-only reads)")
	f.IntVar(&opts.FullReadEvery, "full-read-every", 10, "re-read append-only files whole at least every Nth backup")
	f.IntVar(&opts.FullWalkEvery, "full-walk-every", 10, "walk every directory, even unchanged ones, every Nth backup")
	f.BoolVar(&opts.AllowEmptySource, "allow-empty-source", false, "accept an empty source whose previous snapshot was not empty")
	f.StringVar(&opts.Host, "host", "", "the host name the snapshot carries (its parent, retention group and overlap check go by it); default: this machine's")
	f.StringSliceVar(&opts.Tags, "tag", nil, "a tag for the snapshot (repeat, or separate with commas)")
	f.StringArrayVar(&opts.Exclude, "exclude", nil, "a gitignore-style pattern of paths below PATH not to back up, e.g. '*.tmp', '/cache/', '**/lost+found' (repeat)")
	f.BoolVar(&opts.OneFileSystem, "one-file-system", false, "store directories on another file system (mount points) as empty directories")
	f.Float64Var(&opts.MaxShrink, "max-shrink", 0.9, "refuse a backup that lost more than this share of both the files and the bytes of the newest healthy snapshot (1: never)")
	f.StringVar(&opts.ReadRate, "read-rate", "", "read the source at most this fast, e.g. 50MiB/s or 200MB/s (default: no limit)")
	f.Float64Var(&opts.CPULimit, "cpu-limit", 0, "use at most this many cores on average, e.g. 0.5 (default 0: no limit)")
	return c
}

// runBackup backs up args[0] as a new snapshot of opts.Policy.
func runBackup(ctx context.Context, opts backupOptions, g *globalOptions, args []string) error {
	if len(args) != 1 {
		return usageErr("backup takes exactly one PATH, got %d arguments", len(args))
	}
	if opts.Policy == "" {
		return usageErr("--policy is required")
	}
	if opts.FullReadEvery < 1 {
		return usageErr("--full-read-every %d: want a positive number", opts.FullReadEvery)
	}
	if opts.FullWalkEvery < 1 {
		return usageErr("--full-walk-every %d: want a positive number", opts.FullWalkEvery)
	}
	if opts.MaxShrink <= 0 || opts.MaxShrink > 1 {
		return usageErr("--max-shrink %g: want a share 0 < x <= 1", opts.MaxShrink)
	}
	if err := checkHostAndTags(opts.Host, opts.Tags); err != nil {
		return err
	}
	var limits budget.Limits
	if opts.ReadRate != "" {
		r, err := units.ParseRate(opts.ReadRate)
		if err != nil {
			return usageErr("--read-rate: %v", err)
		}
		limits.ReadRate = r
	}
	if opts.CPULimit != 0 && !(opts.CPULimit >= budget.MinCPU && opts.CPULimit <= 1024) {
		return usageErr("--cpu-limit %g: want a number of cores from %g to 1024, such as 0.5", opts.CPULimit, budget.MinCPU)
	}
	limits.CPU = opts.CPULimit
	for _, p := range opts.Exclude {
		if strings.TrimSpace(p) == "" {
			return usageErr("--exclude %q: want a gitignore-style pattern", p)
		}
	}
	// The scan needs no key: it runs on the other core while the key is
	// derived (not while a password is typed: the snapshot is dated when
	// the scan starts).
	var scan *archiver.Scan
	defer func() {
		if scan != nil {
			scan.Stop()
		}
	}()
	r, log, err := g.openWith(ctx, func() {
		scan = archiver.StartScan(ctx, args[0], archiver.ScanOptions{Exclude: opts.Exclude, OneFileSystem: opts.OneFileSystem})
	})
	if err != nil {
		return err
	}
	warnSourceHoldsRepo(log, args[0], g.repo)
	a, err := archiver.New(r, archiver.Options{Policy: opts.Policy, AppendOnly: opts.AppendOnly,
		FullReadEvery: opts.FullReadEvery, FullWalkEvery: opts.FullWalkEvery,
		Logger: log, Program: "backupd " + version, AllowEmptySource: opts.AllowEmptySource, MaxShrink: opts.MaxShrink,
		Hostname: opts.Host, Tags: opts.Tags, Exclude: opts.Exclude, OneFileSystem: opts.OneFileSystem, Budget: limits})
	if err != nil {
		return usageErr("%v", err)
	}
	stopProgress := g.showProgress(func() string {
		s := &a.Stats
		return fmt.Sprintf("files %d new, %d changed, %d unchanged; read %s, stored %s",
			s.FilesNew.Load(), s.FilesChanged.Load(), s.FilesUnchanged.Load(), units.Bytes(s.BytesRead.Load()), units.Bytes(s.BytesWritten.Load()))
	})
	sn, err := a.BackupScan(ctx, scan)
	stopProgress()
	if err != nil {
		return err
	}
	t := sn.Totals
	sum := backupSummary{SnapshotID: sn.ID.String(), Policy: sn.Policy, Source: sn.Source, Seq: sn.Seq,
		FilesNew: t.FilesNew, FilesChanged: t.FilesChanged, FilesUnchanged: t.FilesUnchanged, FilesSkipped: t.FilesSkipped,
		Dirs: t.Dirs, DirsReused: a.Stats.DirsReused.Load(), SilentChanges: a.Stats.SilentChanges.Load(), Errors: t.Errors,
		BytesTotal: t.BytesTotal, BytesRead: t.BytesRead, BytesWritten: t.BytesWritten, DurationSec: t.DurationSec,
		Suspect: sn.Suspect}
	var incomplete error
	if t.Errors > 0 {
		incomplete = &exitError{code: exitIncomplete, err: fmt.Errorf("snapshot %s saved without %d files that could not be read (see the warnings above)", sn.ID.Str(), t.Errors)}
	}
	if g.json {
		if err := g.printJSON(sum); err != nil {
			return err
		}
		return incomplete
	}
	if !g.quiet {
		fmt.Fprintf(g.stdout, "snapshot %s of policy %s saved (seq %d)\n", sn.ID.Str(), sn.Policy, sn.Seq)
		fmt.Fprintf(g.stdout, "files: %d new, %d changed, %d unchanged, %d skipped; %d errors\n",
			t.FilesNew, t.FilesChanged, t.FilesUnchanged, t.FilesSkipped, t.Errors)
		fmt.Fprintf(g.stdout, "read %s of %s, stored %s in %.2fs\n", units.Bytes(t.BytesRead), units.Bytes(t.BytesTotal), units.Bytes(t.BytesWritten), t.DurationSec)
	}
	if sn.Suspect != "" {
		fmt.Fprintf(g.stdout, "warning: suspect snapshot: %s; retention keeps the newest snapshot that is not\n", escape(sn.Suspect))
	}
	return incomplete
}

// warnSourceHoldsRepo warns when the repository lies inside the source: the
// backup then stores the repository's own files, which grow with every run.
func warnSourceHoldsRepo(log *slog.Logger, source, repo string) {
	if location.IsS3(repo) {
		return // a bucket is in no directory
	}
	src, err1 := resolvePath(source)
	r, err2 := resolvePath(repo)
	if err1 == nil && err2 == nil && within(src, r) {
		log.Warn("the source contains the repository: its files are backed up too, and grow with every backup; keep the repository outside the source",
			"source", source, "repository", repo)
	}
}
