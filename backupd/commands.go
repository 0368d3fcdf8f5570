package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/local"
	"github.com/meshbackup/backupd/backupd/checker"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/prune"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

var errUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

// globalOptions are the flags every command shares.
type globalOptions struct {
	repo         string
	passwordFile string
	json         bool
	quiet        bool
	logFormat    string
	logLevel     string
	stdout       io.Writer
	stderr       *os.File
}

const exitCodesHelp = `Exit codes:
  0  success
  1  failure (the error is printed)
  2  bad usage: unknown flag, missing argument, bad value
  3  corruption found (check), or files not restored because their data is corrupt (restore)
  4  backup skipped: a backup of the same policy and source is already running on this host

Environment:
  BACKUPD_REPOSITORY     repository directory (instead of --repo)
  BACKUPD_PASSWORD       repository password
  BACKUPD_PASSWORD_FILE  file holding the password (instead of --password-file)
`

func newRootCommand(stdout, stderr *os.File) *cobra.Command {
	g := &globalOptions{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "backupd",
		Short: "Back up service-mesh volumes and prove them restorable",
		Long: `backupd backs up directories into an encrypted, deduplicating, crash-safe
repository (FastCDC chunks, zstd, AES-256-GCM), restores them byte-exact,
and verifies every blob by reading it back.

` + exitCodesHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErr("%v (see '%s --help')", err, c.CommandPath())
	})
	pf := root.PersistentFlags()
	pf.StringVarP(&g.repo, "repo", "r", os.Getenv("BACKUPD_REPOSITORY"), "repository directory (env BACKUPD_REPOSITORY)")
	pf.StringVar(&g.passwordFile, "password-file", os.Getenv("BACKUPD_PASSWORD_FILE"), "read the repository password from this file (env BACKUPD_PASSWORD_FILE; or set BACKUPD_PASSWORD)")
	pf.BoolVar(&g.json, "json", false, "print results as JSON for machines")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print no progress")
	pf.StringVar(&g.logFormat, "log.format", "text", "log format: text or json")
	pf.StringVar(&g.logLevel, "log.level", "info", "log level: debug, info, warn or error")

	root.AddCommand(initCommand(g), backupCommand(g), snapshotsCommand(g), restoreCommand(g),
		checkCommand(g), forgetCommand(g), pruneCommand(g), runCommand(g), configCommand(g), simulateCommand(g))
	return root
}

func (g *globalOptions) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usageErr("--log.level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, usageErr("--log.format %q: want text or json", g.logFormat)
}

// progress reports whether to draw progress on the terminal.
func (g *globalOptions) progress() bool {
	return !g.quiet && !g.json && term.IsTerminal(int(g.stderr.Fd()))
}

func (g *globalOptions) password(confirm bool) ([]byte, error) {
	if g.passwordFile != "" {
		b, err := os.ReadFile(g.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("read password file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("password file %s is empty", g.passwordFile)
		}
		return b, nil
	}
	if p := os.Getenv("BACKUPD_PASSWORD"); p != "" {
		return []byte(p), nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, usageErr("no password: set BACKUPD_PASSWORD or BACKUPD_PASSWORD_FILE, or pass --password-file")
	}
	fmt.Fprint(g.stderr, "repository password: ")
	p, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(g.stderr)
	if err != nil {
		return nil, err
	}
	if confirm {
		fmt.Fprint(g.stderr, "enter it again: ")
		q, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(g.stderr)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, q) {
			return nil, errors.New("the passwords do not match")
		}
	}
	if len(p) == 0 {
		return nil, errors.New("empty password")
	}
	return p, nil
}

func (g *globalOptions) repoOptions(log *slog.Logger) (repository.Options, error) {
	faults, err := faultpoint.Parse(os.Getenv("BACKUPD_FAULT"))
	if err != nil {
		return repository.Options{}, usageErr("%v", err)
	}
	return repository.Options{Logger: log, Faults: faults, IndexLoaded: g.applyMemoryLimit}, nil
}

// Memory budget (README "Memory"): the data pipeline's buffers fit in
// memoryBase whatever the data size; the index needs about indexBytesPerBlob
// per blob. The limit is soft (the Go runtime's GC target), so going over it
// costs CPU, never a failure. GOMEMLIMIT overrides it.
const (
	memoryBase        = 48 << 20
	indexBytesPerBlob = 256
)

func (g *globalOptions) applyMemoryLimit(blobs int) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(memoryBase + int64(blobs)*indexBytesPerBlob)
}

// open opens the repository named by --repo.
func (g *globalOptions) open(ctx context.Context) (*repository.Repo, *slog.Logger, error) {
	return g.openWith(ctx, nil)
}

// openWith is open, calling beforeKey (if not nil) once the password is in
// hand, just before the key is derived from it.
func (g *globalOptions) openWith(ctx context.Context, beforeKey func()) (*repository.Repo, *slog.Logger, error) {
	log, err := g.logger()
	if err != nil {
		return nil, nil, err
	}
	if g.repo == "" {
		return nil, nil, usageErr("no repository: pass --repo DIR or set BACKUPD_REPOSITORY")
	}
	g.applyMemoryLimit(0)
	pw, err := g.password(false)
	if err != nil {
		return nil, nil, err
	}
	opt, err := g.repoOptions(log)
	if err != nil {
		return nil, nil, err
	}
	be, err := local.Open(g.repo, local.Options{})
	if err != nil {
		return nil, nil, err
	}
	if beforeKey != nil {
		beforeKey()
	}
	r, err := repository.Open(ctx, be, pw, opt)
	if err != nil {
		return nil, nil, err
	}
	return r, log, nil
}

func (g *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func initCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "init --repo DIR",
		Short: "Create a repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if g.repo == "" {
				return usageErr("no repository: pass --repo DIR or set BACKUPD_REPOSITORY")
			}
			pw, err := g.password(true)
			if err != nil {
				return err
			}
			opt, err := g.repoOptions(log)
			if err != nil {
				return err
			}
			be, err := local.Create(g.repo, local.Options{})
			if err != nil {
				return err
			}
			r, err := repository.Init(cmd.Context(), be, pw, opt)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"repository": g.repo, "id": r.Config().ID, "version": r.Config().Version})
			}
			fmt.Fprintf(g.stdout, "created repository %s at %s\n", r.Config().ID[:8], g.repo)
			return nil
		},
	}
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
}

func backupCommand(g *globalOptions) *cobra.Command {
	var policy string
	var appendOnly []string
	var fullEvery, walkEvery int
	var allowEmpty bool
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
--full-walk-every'th backup of a policy checks every file again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if policy == "" {
				return usageErr("--policy is required")
			}
			if fullEvery < 1 {
				return usageErr("--full-read-every %d: want a positive number", fullEvery)
			}
			if walkEvery < 1 {
				return usageErr("--full-walk-every %d: want a positive number", walkEvery)
			}
			ctx := cmd.Context()
			// The scan needs no key: it runs on the other core while the
			// key is derived (not while a password is typed: the snapshot
			// is dated when the scan starts).
			var scan *archiver.Scan
			defer func() {
				if scan != nil {
					scan.Stop()
				}
			}()
			r, log, err := g.openWith(ctx, func() { scan = archiver.StartScan(ctx, args[0], nil) })
			if err != nil {
				return err
			}
			a, err := archiver.New(r, archiver.Options{Policy: policy, AppendOnly: appendOnly, FullReadEvery: fullEvery, FullWalkEvery: walkEvery,
				Logger: log, Program: "backupd " + version, AllowEmptySource: allowEmpty})
			if err != nil {
				return usageErr("%v", err)
			}
			stopProgress := g.showProgress(func() string {
				s := &a.Stats
				return fmt.Sprintf("files %d new, %d changed, %d unchanged; read %s, stored %s",
					s.FilesNew.Load(), s.FilesChanged.Load(), s.FilesUnchanged.Load(), bytesStr(s.BytesRead.Load()), bytesStr(s.BytesWritten.Load()))
			})
			sn, err := a.BackupScan(ctx, scan)
			stopProgress()
			if err != nil {
				return err
			}
			t := sn.Totals
			sum := backupSummary{SnapshotID: sn.ID.String(), Policy: sn.Policy, Source: sn.Source, Seq: sn.Seq,
				FilesNew: t.FilesNew, FilesChanged: t.FilesChanged, FilesUnchanged: t.FilesUnchanged, FilesSkipped: t.FilesSkipped,
				Dirs: t.Dirs, DirsReused: a.Stats.DirsReused.Load(), SilentChanges: a.Stats.SilentChanges.Load(), Errors: t.Errors, BytesTotal: t.BytesTotal, BytesRead: t.BytesRead, BytesWritten: t.BytesWritten, DurationSec: t.DurationSec}
			if g.json {
				return g.printJSON(sum)
			}
			if !g.quiet {
				fmt.Fprintf(g.stdout, "snapshot %s of policy %s saved (seq %d)\n", sn.ID.Str(), sn.Policy, sn.Seq)
				fmt.Fprintf(g.stdout, "files: %d new, %d changed, %d unchanged, %d skipped; %d errors\n",
					t.FilesNew, t.FilesChanged, t.FilesUnchanged, t.FilesSkipped, t.Errors)
				fmt.Fprintf(g.stdout, "read %s of %s, stored %s in %.2fs\n", bytesStr(t.BytesRead), bytesStr(t.BytesTotal), bytesStr(t.BytesWritten), t.DurationSec)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&policy, "policy", "p", "", "policy name (required)")
	c.Flags().StringSliceVar(&appendOnly, "append-only", archiver.DefaultAppendOnly, "name patterns of append-only files (tail-only reads)")
	c.Flags().IntVar(&fullEvery, "full-read-every", 10, "re-read append-only files whole at least every Nth backup")
	c.Flags().IntVar(&walkEvery, "full-walk-every", 10, "walk every directory, even unchanged ones, every Nth backup")
	c.Flags().BoolVar(&allowEmpty, "allow-empty-source", false, "accept an empty source whose previous snapshot was not empty")
	return c
}

// showProgress redraws a status line on a terminal every half second.
func (g *globalOptions) showProgress(status func() string) (stop func()) {
	if !g.progress() {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(g.stderr, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprintf(g.stderr, "\r\033[K[%s] %s", time.Since(start).Truncate(time.Second), status())
			}
		}
	}()
	return func() { close(done); <-finished }
}

func bytesStr(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

type snapshotJSON struct {
	ID       string          `json:"id"`
	Short    string          `json:"short_id"`
	Seq      uint64          `json:"seq"`
	Time     time.Time       `json:"time"`
	Policy   string          `json:"policy"`
	Source   string          `json:"source"`
	Hostname string          `json:"hostname"`
	Parent   string          `json:"parent,omitempty"`
	Totals   snapshot.Totals `json:"totals"`
}

func toJSON(s *snapshot.Snapshot) snapshotJSON {
	j := snapshotJSON{ID: s.ID.String(), Short: s.ID.Str(), Seq: s.Seq, Time: s.Time, Policy: s.Policy,
		Source: s.Source, Hostname: s.Hostname, Totals: s.Totals}
	if s.Parent != nil {
		j.Parent = s.Parent.String()
	}
	return j
}

func snapshotsCommand(g *globalOptions) *cobra.Command {
	var policy string
	c := &cobra.Command{
		Use:   "snapshots --repo DIR [--policy NAME] [--json]",
		Short: "List snapshots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, log, err := g.open(cmd.Context())
			if err != nil {
				return err
			}
			snaps, bad, err := snapshot.LoadAll(cmd.Context(), r)
			if err != nil {
				return err
			}
			for id, err := range bad {
				log.Warn("unreadable snapshot", "snapshot", id.Str(), "err", err)
			}
			out := []snapshotJSON{}
			for _, s := range snaps {
				if policy == "" || s.Policy == policy {
					out = append(out, toJSON(s))
				}
			}
			if g.json {
				return g.printJSON(out)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEQ\tTIME\tPOLICY\tHOST\tSOURCE\tFILES\tSIZE")
			for _, s := range out {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", s.Short, s.Seq, s.Time.Local().Format("2006-01-02 15:04:05"),
					s.Policy, s.Hostname, s.Source, s.Totals.Files, bytesStr(s.Totals.BytesTotal))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(bad) > 0 {
				return &exitError{code: exitCorrupt, err: fmt.Errorf("%d snapshots unreadable", len(bad))}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&policy, "policy", "p", "", "only this policy")
	return c
}

func restoreCommand(g *globalOptions) *cobra.Command {
	var policy, target string
	var del bool
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
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if target == "" {
				return usageErr("--target is required")
			}
			ctx := cmd.Context()
			r, log, err := g.open(ctx)
			if err != nil {
				return err
			}
			if err := r.LoadIndex(ctx); err != nil {
				return err
			}
			snaps, _, err := snapshot.LoadAll(ctx, r)
			if err != nil {
				return err
			}
			sn, err := snapshot.Find(snaps, args[0], policy)
			if err != nil {
				return err
			}
			rs := restorer.New(r, restorer.Options{Delete: del, Logger: log, Faults: r.Faults()})
			start := time.Now()
			stopProgress := g.showProgress(func() string {
				return fmt.Sprintf("restored %d files, %s", rs.Stats.Files.Load(), bytesStr(rs.Stats.Bytes.Load()))
			})
			res, err := rs.Restore(ctx, sn, target)
			stopProgress()
			if err != nil {
				return err
			}
			sum := map[string]any{
				"snapshot_id": sn.ID.String(), "target": target,
				"files_restored": rs.Stats.Files.Load(), "files_unchanged": rs.Stats.Unchanged.Load(),
				"dirs": rs.Stats.Dirs.Load(), "symlinks": rs.Stats.Symlinks.Load(), "skipped": rs.Stats.Skipped.Load(),
				"bytes_written": rs.Stats.Bytes.Load(), "duration_seconds": time.Since(start).Seconds(),
				"failed": len(res.Failed),
			}
			var failed []string
			for _, f := range res.Failed {
				failed = append(failed, f.Error())
			}
			if g.json {
				sum["failures"] = failed
				if err := g.printJSON(sum); err != nil {
					return err
				}
			} else if !g.quiet {
				fmt.Fprintf(g.stdout, "restored snapshot %s to %s: %d files written, %d already present, %s in %.2fs\n",
					sn.ID.Str(), target, rs.Stats.Files.Load(), rs.Stats.Unchanged.Load(), bytesStr(rs.Stats.Bytes.Load()), time.Since(start).Seconds())
			}
			if len(res.Failed) > 0 {
				code := exitFailed
				if res.Corrupt() {
					code = exitCorrupt
				}
				return &exitError{code: code, err: fmt.Errorf("%d files not restored:\n  %s", len(failed), strings.Join(failed, "\n  "))}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&policy, "policy", "p", "", "with 'latest': the newest snapshot of this policy")
	c.Flags().StringVarP(&target, "target", "t", "", "directory to restore into (required)")
	c.Flags().BoolVar(&del, "delete", false, "remove files in the target that the snapshot does not hold")
	return c
}

func parseSubset(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "/")
	n, err1 := strconv.Atoi(a)
	t, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || t < 1 || n < 1 || n > t {
		return 0, 0, usageErr("--read-data-subset %q: want N/T with 1 <= N <= T, e.g. 2/7", s)
	}
	return n, t, nil
}

func checkCommand(g *globalOptions) *cobra.Command {
	var readData bool
	var subset string
	c := &cobra.Command{
		Use:   "check --repo DIR [--read-data | --read-data-subset N/T]",
		Short: "Verify the repository's structure and, optionally, read back its data",
		Long: `Check that every blob a snapshot needs is indexed, every indexed pack
exists, and every index entry agrees with its pack's trailer. --read-data
also reads every pack back, decrypts and re-hashes every blob;
--read-data-subset N/T reads the packs of part N of T (run 1/T .. T/T in
turn to cover everything). Exits 3 when anything is damaged, naming the
packs, blobs, snapshots and files affected.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opt := checker.Options{ReadData: readData}
			if subset != "" {
				if readData {
					return usageErr("--read-data and --read-data-subset exclude each other")
				}
				n, t, err := parseSubset(subset)
				if err != nil {
					return err
				}
				opt.SubsetN, opt.SubsetT = n, t
			}
			ctx := cmd.Context()
			r, log, err := g.open(ctx)
			if err != nil {
				return err
			}
			opt.Logger = log
			if g.progress() {
				opt.Progress = func(done, total int) { fmt.Fprintf(g.stderr, "\r\033[Kread %d of %d packs", done, total) }
			}
			rep, err := checker.Check(ctx, r, opt)
			if opt.Progress != nil {
				fmt.Fprint(g.stderr, "\r\033[K")
			}
			if err != nil {
				return err
			}
			if g.json {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else {
				for _, w := range rep.Warnings {
					fmt.Fprintf(g.stdout, "warning: %s\n", w)
				}
				for _, p := range rep.Problems {
					fmt.Fprintf(g.stdout, "error: %s: %s\n", p.Kind, p.Message)
				}
				for _, a := range rep.Affected {
					fmt.Fprintf(g.stdout, "affected: snapshot %s (policy %s) file %s\n", a.Snapshot, a.Policy, a.Path)
				}
				if !g.quiet {
					fmt.Fprintf(g.stdout, "checked %d snapshots, %d packs; read back %d packs, %d blobs: %d problems\n",
						rep.Snapshots, rep.Packs, rep.PacksRead, rep.BlobsChecked, len(rep.Problems))
				}
			}
			if !rep.OK() {
				return &exitError{code: exitCorrupt, err: fmt.Errorf("repository damaged: %d problems, %d files affected", len(rep.Problems), len(rep.Affected))}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&readData, "read-data", false, "read back and verify every blob")
	c.Flags().StringVar(&subset, "read-data-subset", "", "read back part N of T of the packs, e.g. 1/7")
	return c
}

func forgetCommand(g *globalOptions) *cobra.Command {
	var policy string
	var keep snapshot.KeepPolicy
	var doPrune, dryRun bool
	var grace time.Duration
	c := &cobra.Command{
		Use:   "forget --repo DIR [--policy NAME] --keep-last N ... [--prune]",
		Short: "Remove snapshots by a retention policy",
		Long: `Remove snapshots that no --keep-* rule keeps, separately for each
policy, source and host. The newest snapshot of each is always kept. Data
is freed by prune (--prune runs it afterwards).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keep.Empty() {
				return usageErr("give at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly")
			}
			if keep.Last < 0 || keep.Hourly < 0 || keep.Daily < 0 || keep.Weekly < 0 || keep.Monthly < 0 {
				return usageErr("--keep-* values must not be negative")
			}
			ctx := cmd.Context()
			r, log, err := g.open(ctx)
			if err != nil {
				return err
			}
			lock, err := r.Lock(ctx, repository.LockOptions{Exclusive: true, Command: "forget"})
			if err != nil {
				return err
			}
			defer lock.Unlock()
			ctx = lock.Context()
			snaps, bad, err := snapshot.LoadAll(ctx, r)
			if err != nil {
				return err
			}
			for id, err := range bad {
				log.Warn("unreadable snapshot left alone", "snapshot", id.Str(), "err", err)
			}
			groups := map[string][]*snapshot.Snapshot{}
			var order []string
			for _, s := range snaps {
				if policy != "" && s.Policy != policy {
					continue
				}
				k := s.Policy + "\x00" + s.Hostname + "\x00" + s.Source
				if _, ok := groups[k]; !ok {
					order = append(order, k)
				}
				groups[k] = append(groups[k], s)
			}
			type result struct {
				Policy string   `json:"policy"`
				Host   string   `json:"hostname"`
				Source string   `json:"source"`
				Keep   []string `json:"keep"`
				Remove []string `json:"remove"`
			}
			var results []result
			for _, k := range order {
				s := groups[k]
				res := result{Policy: s[0].Policy, Host: s[0].Hostname, Source: s[0].Source, Keep: []string{}, Remove: []string{}}
				for _, d := range snapshot.ApplyPolicy(s, keep) {
					if d.Keep {
						res.Keep = append(res.Keep, d.Snapshot.ID.Str())
						continue
					}
					res.Remove = append(res.Remove, d.Snapshot.ID.Str())
					if !dryRun {
						if err := r.Backend().Remove(ctx, snapHandle(d.Snapshot.ID)); err != nil {
							return fmt.Errorf("forget snapshot %s: %w", d.Snapshot.ID.Str(), err)
						}
					}
				}
				results = append(results, res)
			}
			if g.json {
				if err := g.printJSON(results); err != nil {
					return err
				}
			} else {
				for _, res := range results {
					fmt.Fprintf(g.stdout, "policy %s, %s:%s: keep %d, remove %d %v\n", res.Policy, res.Host, res.Source, len(res.Keep), len(res.Remove), res.Remove)
				}
			}
			if doPrune && !dryRun {
				return runPrune(ctx, g, r, grace)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVarP(&policy, "policy", "p", "", "only snapshots of this policy")
	f.IntVar(&keep.Last, "keep-last", 0, "keep the N newest snapshots")
	f.IntVar(&keep.Hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours")
	f.IntVar(&keep.Daily, "keep-daily", 0, "keep the newest snapshot of each of the last N days")
	f.IntVar(&keep.Weekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N weeks")
	f.IntVar(&keep.Monthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months")
	f.BoolVar(&doPrune, "prune", false, "run prune afterwards")
	f.BoolVarP(&dryRun, "dry-run", "n", false, "only print what would be removed")
	f.DurationVar(&grace, "grace", 24*time.Hour, "with --prune: how long an unreferenced pack stays marked before deletion")
	return c
}

func pruneCommand(g *globalOptions) *cobra.Command {
	var grace time.Duration
	c := &cobra.Command{
		Use:   "prune --repo DIR [--grace DURATION]",
		Short: "Delete packs no snapshot needs (two-phase, with a grace period)",
		Long: `Mark packs that no snapshot references; delete packs marked at least
--grace ago that are still unreferenced. The grace period must exceed the
longest backup, so an interrupted backup's packs survive until it resumes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, _, err := g.open(ctx)
			if err != nil {
				return err
			}
			lock, err := r.Lock(ctx, repository.LockOptions{Exclusive: true, Command: "prune"})
			if err != nil {
				return err
			}
			defer lock.Unlock()
			return runPrune(lock.Context(), g, r, grace)
		},
	}
	c.Flags().DurationVar(&grace, "grace", 24*time.Hour, "how long an unreferenced pack stays marked before deletion")
	return c
}

func runPrune(ctx context.Context, g *globalOptions, r *repository.Repo, grace time.Duration) error {
	plan, err := prune.NewPlan(ctx, r, prune.Options{Grace: grace})
	if err != nil {
		return err
	}
	if err := plan.Execute(ctx, r); err != nil {
		return err
	}
	if be, ok := backend.As[backend.TempCleaner](r.Backend()); ok {
		if err := be.CleanTemp(); err != nil {
			return fmt.Errorf("prune: clean temp files: %w", err)
		}
	}
	if g.json {
		return g.printJSON(map[string]any{"marked": len(plan.Mark), "deleted": len(plan.Delete), "waiting": len(plan.Waiting), "deleted_bytes": plan.DeleteBytes})
	}
	fmt.Fprintf(g.stdout, "prune: %d packs newly marked, %d deleted (%s), %d waiting for the grace period\n",
		len(plan.Mark), len(plan.Delete), bytesStr(uint64(plan.DeleteBytes)), len(plan.Waiting))
	return nil
}

func snapHandle(id repository.ID) backend.Handle {
	return backend.Handle{Type: backend.SnapshotFile, Name: id.String()}
}
