package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/meshbackup/backupd/backupd/archiver"
	"github.com/meshbackup/backupd/backupd/budget"
	"github.com/meshbackup/backupd/backupd/checker"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/prune"
	"github.com/meshbackup/backupd/backupd/regfile"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/restorer"
	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/backupd/snapshot"
	"github.com/meshbackup/backupd/backupd/tempdir"
)

// classify maps an error to a failure reason.
func classify(ctx context.Context, err error) string {
	switch {
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return results.ReasonInterrupted
	case errors.Is(err, repository.ErrCorrupt):
		return results.ReasonCorruption
	case errors.Is(err, repository.ErrLocked) || errors.Is(err, archiver.ErrOverlap):
		return results.ReasonLocked
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission):
		return results.ReasonSource
	}
	return results.ReasonRepository
}

// run brackets one run in process: records its start, serializes it with
// every other run, meters the process while it lasts, and records its end.
func (d *Daemon) run(ctx context.Context, h *repoHandle, rec results.Record, body func(*results.Record) error) results.Record {
	return d.runMetered(ctx, h, rec, func(rec *results.Record) (usage, error) {
		m := startMeter(ctx)
		err := body(rec)
		return m.finish(context.WithoutCancel(ctx)), err
	})
}

// runMetered is run for a body that meters itself (a backup in a child
// process: its own rusage).
func (d *Daemon) runMetered(ctx context.Context, h *repoHandle, rec results.Record, body func(*results.Record) (usage, error)) results.Record {
	d.slots <- struct{}{}
	defer func() { <-d.slots }()
	rec.RunID, rec.Repository, rec.Start = newRunID(), h.cfg.Name, d.opt.Now()
	if rec.Hostname == "" {
		rec.Hostname = d.opt.Hostname
	}
	log := d.log.With("policy", rec.Policy, "kind", rec.Kind, "run", rec.RunID)
	if err := h.store.Started(ctx, rec); err != nil {
		log.Warn("could not record the run's start", "err", err)
	}
	d.opt.Observer.RunStarted(rec)
	d.mu.Lock()
	d.running[rec.Policy] = &Running{RunID: rec.RunID, Kind: rec.Kind, Start: rec.Start}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.running, rec.Policy)
		d.mu.Unlock()
	}()
	u, err := body(&rec)
	rec.End = d.opt.Now()
	rec.CPUSeconds, rec.MaxRSS, rec.ReadIOBytes, rec.WriteIOBytes = u.CPUSeconds, u.MaxRSS, u.ReadIOBytes, u.WriteIOBytes
	if err != nil {
		rec.Outcome = results.Failure
		if rec.Reason == "" {
			rec.Reason = classify(ctx, err)
		}
		rec.Error = err.Error()
	} else if rec.Outcome == "" {
		rec.Outcome = results.Success
	}
	// The final record is written even when shutting down.
	if err := h.store.Finished(context.WithoutCancel(ctx), rec); err != nil {
		log.Warn("could not record the run's result in the repository; it is kept and written with the next record", "err", err)
	}
	d.opt.Observer.RunFinished(rec)
	args := []any{"result", rec.Outcome, "duration_seconds", rec.Duration().Seconds(), "cpu_seconds", rec.CPUSeconds,
		"max_rss_bytes", rec.MaxRSS}
	switch rec.Kind {
	case results.Backup:
		args = append(args, "snapshot", rec.Snapshot, "bytes_read", rec.BytesRead, "bytes_written", rec.BytesWritten,
			"files_new", rec.FilesNew, "files_changed", rec.FilesChanged, "files_unchanged", rec.FilesUnchanged, "files_skipped", rec.FilesSkipped)
	case results.Drill:
		args = append(args, "snapshot", rec.Snapshot, "files_verified", rec.FilesVerified, "mismatched_files", rec.MismatchedFiles,
			"within_rto", rec.WithinRTO, "rto_seconds", rec.RTOSeconds)
	case results.Verify:
		args = append(args, "blobs_checked", rec.BlobsChecked, "blobs_corrupt", rec.BlobsCorrupt, "coverage", rec.Coverage)
	case results.Scrub:
		args = append(args, "silent_changes", rec.SilentChanges)
	}
	switch rec.Outcome {
	case results.Failure:
		args = append(args, "reason", rec.Reason, "err", rec.Error)
		log.Error("run failed", args...)
	case results.Partial:
		log.Warn("run finished without some files it could not read", append(args, "files_unreadable", rec.FilesUnreadable)...)
	default:
		log.Info("run finished", args...)
	}
	return rec
}

func (d *Daemon) runBackup(ctx context.Context, cfg *config.Config, h *repoHandle, p config.Policy, trigger string) results.Record {
	host := cfg.HostFor(p, d.opt.Hostname)
	rec := d.runMetered(ctx, h, results.Record{Kind: results.Backup, Policy: p.Name, Trigger: trigger, Hostname: host}, func(rec *results.Record) (usage, error) {
		if d.opt.Isolate != nil {
			return d.backupInChild(ctx, h, p, host, rec)
		}
		m := startMeter(ctx)
		err := d.backupInProcess(ctx, h, p, host, rec)
		return m.finish(context.WithoutCancel(ctx)), err
	})
	// Retention only after a complete backup: a snapshot that skipped
	// unreadable files must not push older, complete ones out.
	switch {
	case rec.Outcome == results.Success && !d.clusterWork():
		// Another daemon of the repository applies retention (Retain).
	case rec.Outcome == results.Success:
		d.retention(ctx, cfg, h, p)
	case rec.Outcome == results.Partial:
		d.log.Warn("retention skipped: the backup could not read some files", "policy", p.Name, "files_unreadable", rec.FilesUnreadable)
	}
	if err := h.store.Compact(context.WithoutCancel(ctx), d.opt.ResultsKept); err != nil {
		d.log.Warn("compacting run records failed", "err", err)
	}
	d.refreshRepoState(context.WithoutCancel(ctx), h.cfg.Name)
	return rec
}

// backupInProcess runs the backup of p in the daemon's process.
func (d *Daemon) backupInProcess(ctx context.Context, h *repoHandle, p config.Policy, host string, rec *results.Record) error {
	repo, err := h.repo.Fresh()
	if err != nil {
		return err
	}
	a, err := archiver.New(repo, archiver.Options{Policy: p.Name, Hostname: host, Tags: p.Tags,
		Exclude: p.Exclude, OneFileSystem: p.OneFileSystem, AppendOnly: p.AppendOnly,
		FullReadEvery: p.FullReadEvery, FullWalkEvery: p.FullWalkEvery,
		AllowEmptySource: p.AllowEmptySource, MaxShrink: p.MaxShrink, Budget: p.Budget,
		Logger: d.opt.Logger, Now: d.opt.Now, Program: "backupd daemon"})
	if err != nil {
		return err
	}
	stop := d.reportProgress(*rec, &a.Stats)
	sn, err := a.Backup(ctx, p.Source)
	stop()
	st := &a.Stats
	countsOf(rec, st)
	rec.SilentChanges = st.SilentChanges.Load()
	if err != nil {
		return backupFailed(rec, err)
	}
	backupDone(rec, sn.ID.String(), st.Errors.Load())
	return nil
}

// backupFailed gives a failed backup's record the reason of the
// archiver's own refusals, and returns err.
func backupFailed(rec *results.Record, err error) error {
	if errors.Is(err, archiver.ErrEmptySource) || errors.Is(err, archiver.ErrSourceShrank) {
		rec.Reason = results.ReasonSource
	}
	return err
}

// backupDone records a backup's snapshot; one saved without the files it
// could not read is partial.
func backupDone(rec *results.Record, snapshot string, unreadable uint64) {
	rec.Snapshot = snapshot
	if rec.FilesUnreadable = unreadable; unreadable > 0 {
		rec.Outcome = results.Partial
	}
}

// reportProgress samples the counts of the running backup base every
// ProgressInterval into Status and Observer.RunProgress, until the
// returned stop, which waits for the last report: none comes after it.
// Only the counts the final record always carries are reported (not the
// unreadable files, which a failed run does not count), so RunFinished's
// are never smaller.
func (d *Daemon) reportProgress(base results.Record, st *archiver.Stats) (stop func()) {
	ticks, stopTicker := d.ticker(d.opt.ProgressInterval)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case <-ticks:
			}
			r := base
			countsOf(&r, st)
			d.progress(r)
		}
	}()
	return func() {
		close(done)
		<-exited
		stopTicker()
	}
}

// progress reports a running backup's counts so far, r, to Status and
// Observer.RunProgress.
func (d *Daemon) progress(r results.Record) {
	d.mu.Lock()
	if run := d.running[r.Policy]; run != nil && run.RunID == r.RunID {
		run.FilesNew, run.FilesChanged, run.FilesUnchanged, run.FilesSkipped = r.FilesNew, r.FilesChanged, r.FilesUnchanged, r.FilesSkipped
		run.Files = r.FilesNew + r.FilesChanged + r.FilesUnchanged + r.FilesSkipped
		run.BytesRead, run.BytesWritten = r.BytesRead, r.BytesWritten
		run.Updated = d.opt.Now()
	}
	d.mu.Unlock()
	d.opt.Observer.RunProgress(r)
}

// countsOf copies a backup's file and byte counts so far into r.
func countsOf(r *results.Record, st *archiver.Stats) {
	r.FilesNew, r.FilesChanged, r.FilesUnchanged, r.FilesSkipped = st.FilesNew.Load(), st.FilesChanged.Load(), st.FilesUnchanged.Load(), st.FilesSkipped.Load()
	r.BytesRead, r.BytesWritten = st.BytesRead.Load(), st.BytesWritten.Load()
}

// retention forgets the policy's old snapshots of this host and source, and
// prunes. It needs the exclusive lock; when another node is writing, it
// waits for the next cycle.
func (d *Daemon) retention(ctx context.Context, cfg *config.Config, h *repoHandle, p config.Policy) {
	host := cfg.HostFor(p, d.opt.Hostname)
	err := d.forget(ctx, cfg, h, p, func(s *snapshot.Snapshot) bool {
		return s.Policy == p.Name && s.Hostname == host && s.Source == p.Source
	})
	if errors.Is(err, repository.ErrLocked) {
		d.log.Info("retention postponed", "policy", p.Name, "err", err)
	} else if err != nil {
		d.log.Warn("retention failed", "policy", p.Name, "err", err)
	}
}

// Retain applies the retention of p, a policy of this daemon's config or
// of another daemon sharing the repository, to the snapshots of p's name
// and host whatever their source path (a node agent's volume moves between
// nodes; its host names it). It is the cluster-wide half of
// Options.ClusterWork; the repository must be one of the config's. It
// returns repository.ErrLocked (wrapped) when a backup holds the
// repository: try again later.
func (d *Daemon) Retain(ctx context.Context, p config.Policy) error {
	h := d.handle(p.Repository)
	if h == nil {
		return fmt.Errorf("retain %s: repository %q is not open", p.Name, p.Repository)
	}
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	host := cfg.HostFor(p, d.opt.Hostname)
	err := d.forget(ctx, cfg, h, p, func(s *snapshot.Snapshot) bool { return s.Policy == p.Name && s.Hostname == host })
	if err != nil {
		return fmt.Errorf("retain %s: %w", p.Name, err)
	}
	return nil
}

// forget forgets the snapshots sel picks beyond p's retention, and prunes,
// under the exclusive lock.
func (d *Daemon) forget(ctx context.Context, cfg *config.Config, h *repoHandle, p config.Policy, sel func(*snapshot.Snapshot) bool) error {
	keep := p.Retention.KeepPolicy()
	if keep.Empty() {
		return nil
	}
	repo, err := h.repo.Fresh()
	if err != nil {
		return err
	}
	lock, err := repo.Lock(ctx, repository.LockOptions{Exclusive: true, Command: "forget"})
	if err != nil {
		return err
	}
	defer lock.Unlock()
	res, err := prune.Forget(lock.Context(), repo, prune.RetentionOptions{
		Keep:         keep,
		Select:       sel,
		Prune:        true,
		PruneOptions: prune.Options{Grace: cfg.Scheduler.PruneGrace, Now: d.opt.Now},
	})
	if err != nil {
		return err
	}
	if res.Removed() > 0 || !res.Plan.Empty() {
		d.log.Info("retention applied", "policy", p.Name, "forgotten", res.Removed(), "packs_marked", len(res.Plan.Mark), "packs_deleted", len(res.Plan.Delete))
		d.refreshRepoState(context.WithoutCancel(ctx), h.cfg.Name)
	}
	return nil
}

// runVerify reads back the next part of the repository's rotation.
func (d *Daemon) runVerify(ctx context.Context, cfg *config.Config, h *repoHandle, p config.Policy) results.Record {
	parts := int(math.Ceil(1 / p.Verify.ReadShare))
	part := 0
	for _, r := range h.store.Records() {
		if r.Kind == results.Verify && r.Repository == h.cfg.Name && r.Outcome == results.Success {
			part = (r.Rotation + 1) % parts
		}
	}
	return d.run(ctx, h, results.Record{Kind: results.Verify, Policy: p.Name, Trigger: "scheduled", Hostname: cfg.HostFor(p, d.opt.Hostname)}, func(rec *results.Record) error {
		// The store's copies are verified, not the local cache's.
		repo, err := h.repo.FreshUncached()
		if err != nil {
			return err
		}
		rep, err := checker.Check(ctx, repo, checker.Options{SubsetN: part + 1, SubsetT: parts, Logger: d.opt.Logger})
		if err != nil {
			return err
		}
		rec.Rotation = part
		rec.BlobsChecked, rec.BlobsCorrupt = uint64(rep.BlobsChecked), uint64(rep.CorruptBlobs)
		rec.Coverage = float64(part+1) / float64(parts)
		if !rep.OK() {
			rec.Reason = results.ReasonCorruption
			for _, a := range rep.Affected {
				d.log.Error("damaged repository data affects a file", "policy", a.Policy, "snapshot", a.Snapshot, "path", a.Path)
			}
			return fmt.Errorf("%w: %d problems, first: %s", repository.ErrCorrupt, len(rep.Problems), rep.Problems[0].Message)
		}
		return nil
	})
}

// runScrub re-reads source files whose metadata did not change since the
// newest snapshot and compares their content with it (docs/DESIGN.md §8
// scenario 8). A mismatch is content that changed behind unchanged metadata: it is
// counted and logged, and the next backup keeps the last good version
// (metadata unchanged means the old content is reused). Append-only files
// whose older part the snapshot took unread (TailRuns > 0) are left out:
// a mismatch there may be an edit made while they grew, and their next
// full read, within full_read_every backups, compares them and counts a
// mismatch as a silent change itself (storing the content as found).
func (d *Daemon) runScrub(ctx context.Context, cfg *config.Config, h *repoHandle, p config.Policy) results.Record {
	return d.run(ctx, h, results.Record{Kind: results.Scrub, Policy: p.Name, Trigger: "scheduled", Hostname: cfg.HostFor(p, d.opt.Hostname)}, func(rec *results.Record) error {
		repo, sn, err := latest(ctx, h, p, cfg.HostFor(p, d.opt.Hostname), false)
		if err != nil || sn == nil {
			return err
		}
		rec.Snapshot = sn.ID.String()
		// Files are opened beneath the source, relative paths from it.
		root, err := os.OpenRoot(p.Source)
		if err != nil {
			return fmt.Errorf("scrub: open source: %w", err)
		}
		defer root.Close()
		var buf []byte
		// The scrub reads the source as a backup does: within the policy's
		// budget (docs/DESIGN.md §3.9).
		bud := budget.New(p.Budget)
		return snapshot.Walk(ctx, repo, sn.Tree, ".", func(rel string, n *snapshot.Node) error {
			if n.TailRuns > 0 {
				return nil
			}
			path := filepath.Join(p.Source, rel)
			same, err := scrubFile(ctx, repo, bud, root, rel, *n, &buf)
			if err != nil || same == nil {
				return nil // gone or changed openly: the next backup handles it
			}
			rec.FilesVerified++
			if !*same {
				rec.SilentChanges++
				d.log.Error("source content changed behind unchanged metadata (bit rot?); the last good version is kept in the repository",
					"policy", rec.Policy, "path", path, "snapshot", sn.ID.Str())
			}
			return nil
		})
	})
}

// latest opens a fresh view of the repository with its index loaded and
// returns the newest snapshot of the policy's source (nil if there is
// none), taken on hostname ("" for any host); with uncached, a view that
// reads nothing from the local cache.
func latest(ctx context.Context, h *repoHandle, p config.Policy, hostname string, uncached bool) (*repository.Repo, *snapshot.Snapshot, error) {
	fresh := h.repo.Fresh
	if uncached {
		fresh = h.repo.FreshUncached
	}
	repo, err := fresh()
	if err != nil {
		return nil, nil, err
	}
	if err := repo.LoadIndex(ctx); err != nil {
		return nil, nil, err
	}
	snaps, _, err := snapshot.LoadAll(ctx, repo)
	if err != nil {
		return nil, nil, err
	}
	return repo, snapshot.Latest(snaps, p.Name, p.Source, hostname), nil
}

// scrubFile returns nil when the file at rel beneath root is not a regular
// file any more or its metadata changed (not a scrub candidate), else
// whether its content still matches the node. It never waits on a FIFO or
// device put in the file's place (regfile.OpenInRoot; docs/DESIGN.md §8
// scenario 38).
func scrubFile(ctx context.Context, repo *repository.Repo, bud *budget.Budget, root *os.Root, rel string, n snapshot.Node, buf *[]byte) (*bool, error) {
	f, fi, err := regfile.OpenInRoot(root, rel)
	if errors.Is(err, regfile.ErrNotRegular) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if m, ok := snapshot.FileMetaOf(fi); !ok || !snapshot.SameMetadata(n, m) {
		return nil, nil
	}
	ok, err := snapshot.VerifyFile(ctx, repo, bud.Reader(ctx, f), n, buf)
	if err != nil {
		return nil, err
	}
	return &ok, nil
}

// runDrill restores the newest snapshot into scratch space, proves every
// file against its recorded hash by reading it back from disk, and measures
// the restore against the RTO.
func (d *Daemon) runDrill(ctx context.Context, cfg *config.Config, h *repoHandle, p config.Policy) results.Record {
	return d.run(ctx, h, results.Record{Kind: results.Drill, Policy: p.Name, Trigger: "drill", RTOSeconds: p.RTO.Seconds(), Hostname: cfg.HostFor(p, d.opt.Hostname)}, func(rec *results.Record) error {
		// A drill proves the store's copies restorable, not the cache's.
		repo, sn, err := latest(ctx, h, p, "", true)
		if err != nil {
			return err
		}
		if sn == nil {
			return fmt.Errorf("no snapshot of policy %s to drill", p.Name)
		}
		rec.Snapshot = sn.ID.String()
		// A directory of its own, held while the drill runs: a daemon
		// killed mid-drill leaves its restored copy behind, and the next
		// drill in the same scratch directory removes it (package tempdir).
		sd, err := tempdir.Acquire(cmp.Or(p.Drill.ScratchDir, os.TempDir()), "backupd-drill-")
		if err != nil {
			return fmt.Errorf("create drill scratch: %w", err)
		}
		defer func() {
			if err := sd.Release(); err != nil {
				d.log.Error("could not remove the drill's scratch copy; remove it by hand", "dir", sd.Path(), "err", err)
			}
		}()
		// The tree goes one level down, beside the directory's marker.
		scratch := filepath.Join(sd.Path(), "tree")
		start := d.opt.Now()
		owner := false
		rs := restorer.New(repo, restorer.Options{Logger: d.opt.Logger, Owner: &owner, KeepTargetMeta: true})
		res, err := rs.Restore(ctx, sn, scratch)
		if err != nil {
			return err
		}
		// Prove every file from disk, not from what the restorer wrote.
		mismatched, verified, err := proveTree(ctx, repo, sn.Tree, scratch)
		if err != nil {
			return err
		}
		elapsed := d.opt.Now().Sub(start)
		rec.FilesVerified = verified
		rec.MismatchedFiles = mismatched + uint64(len(res.Failed))
		switch {
		case rec.MismatchedFiles > 0:
			rec.Reason = results.ReasonMismatch
			if res.Corrupt() {
				rec.Reason = results.ReasonCorruption
			}
			return fmt.Errorf("%d files did not restore byte-exact", rec.MismatchedFiles)
		case p.RTO > 0 && elapsed > p.RTO: // 0: no RTO (node agent policies without one)
			rec.Reason = results.ReasonRTO
			return fmt.Errorf("restore took %s, over the RTO of %s", elapsed.Round(1e6), p.RTO)
		}
		rec.WithinRTO = true
		return nil
	})
}

// proveTree re-reads every restored file and checks it against its node. A
// file that cannot be opened as a regular file (a FIFO put in its place is
// never waited on: regfile.OpenInRoot, docs/DESIGN.md §8 scenario 38) is
// mismatched. Files are opened beneath dir, one component at a time, so
// path length is no limit.
func proveTree(ctx context.Context, repo *repository.Repo, id repository.ID, dir string) (mismatched, verified uint64, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, 0, fmt.Errorf("drill: open scratch: %w", err)
	}
	defer root.Close()
	var buf []byte
	err = snapshot.Walk(ctx, repo, id, ".", func(rel string, n *snapshot.Node) error {
		f, _, err := regfile.OpenInRoot(root, rel)
		if err != nil {
			mismatched++
			return nil
		}
		ok, err := snapshot.VerifyFile(ctx, repo, f, *n, &buf)
		f.Close()
		if err != nil || !ok {
			mismatched++
			return nil
		}
		verified++
		return nil
	})
	return mismatched, verified, err
}
