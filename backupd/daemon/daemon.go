// Package daemon runs the scheduled cycles of `backupd run`: for each policy,
// a backup on its schedule, then a verify run and a restore drill when they
// are due (each on its own schedule). Every run ends with a results.Record in
// the repository; metrics are pushed to an Observer that main wires to the
// collectors, so this package never imports Prometheus.
//
// Runs are serialized daemon-wide (Options.MaxRuns, default 1): one run at a
// time keeps the memory budget of one run and makes the process's CPU, RSS
// and I/O attributable to it. With Options.Isolate each backup runs in a
// child process and is metered by the child's own rusage, so backups keep
// their own figures however many runs overlap (docs/DESIGN.md §3.6); verify
// runs, scrubs and drills stay in the daemon's process. A cycle that is due
// while the same policy's previous cycle still runs is skipped and counted.
//
// Imports: the engine packages (archiver, restorer, checker, prune,
// repository, results, snapshot, backend, backend/location, config,
// faultpoint), gopsutil for run metering and x/sys/unix for signal names. It must not import Prometheus, collectors/ or exporter/
// (docs/DESIGN.md §2.3); collectors/ and exporter/ import it for Observer,
// RepoState and Status.
package daemon

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// Observer receives what the daemon does. Calls come from the daemon's
// goroutines; implementations must be safe for concurrent use.
type Observer interface {
	Configured(cfg *config.Config)
	// Restored replays the records found in a repository at start: it sets
	// "last" gauges without counting the runs again.
	Restored(recs []results.Record)
	RunStarted(r results.Record)
	// RunProgress reports a running backup: r is its record so far, with
	// the files counted (new, changed, unchanged, skipped) and the bytes
	// read and written, cumulative since the run started. It comes at
	// most once per Options.ProgressInterval, never after RunFinished of
	// the run; RunFinished carries the final counts, which are never
	// smaller.
	RunProgress(r results.Record)
	RunFinished(r results.Record)
	Skipped(policy, reason string)
	Missed(policy string, n int)
	RepositoryState(s RepoState)
}

// RepoState is the cached state of a repository, refreshed after each run.
type RepoState struct {
	Name string
	Up   bool
	// SizeBytes is the sum of the objects' sizes, from a listing at each
	// refresh (after a run), never at a scrape.
	SizeBytes    uint64
	LogicalBytes uint64
	// FreeBytes is the space left where the repository is stored, when
	// HasFreeBytes: only a backend.SpaceReporter (a directory) knows it; an
	// object store has no such figure and none is reported.
	FreeBytes    uint64
	HasFreeBytes bool
	Snapshots    map[string]int // per policy
	// LastBackupSuccess is the newest snapshot time per policy, read from
	// the repository (so it survives restarts).
	LastBackupSuccess map[string]time.Time
}

// Options configure a daemon.
type Options struct {
	Logger   *slog.Logger
	Now      func() time.Time
	Hostname string
	Observer Observer
	// OpenBackend opens a repository's backend (main opens it through
	// backend/location and wraps it with the storage-operation metrics).
	OpenBackend func(ctx context.Context, r config.Repository) (backend.Backend, error)
	// RepoOptions are passed to repository.Open; RepoOptionsFor, if set,
	// adjusts them for a repository (main sets its uploads).
	RepoOptions    repository.Options
	RepoOptionsFor func(r config.Repository, o repository.Options) repository.Options
	// ResultsKept is how many records of each policy and kind are kept.
	ResultsKept int
	// ProgressInterval is how often a running backup's counts are sampled
	// for Observer.RunProgress and Status: 1s.
	ProgressInterval time.Duration
	// Password, if set, gives a repository's password instead of its
	// password_file or password_env (the node agent reads it from a
	// Kubernetes secret and keeps it in memory). The error never holds it.
	Password func(r config.Repository) ([]byte, error)
	// ClusterWork, if set, says whether this daemon does the work of a
	// repository shared with other daemons: retention (forget and prune)
	// after a backup, and verify runs. Node agents share a repository and
	// only the one holding the leader lease answers true (it calls Retain
	// for the other nodes' volumes). Nil: always (one daemon per
	// repository, as `backupd run`).
	ClusterWork func() bool
	// MaxRuns is how many runs (of different policies) may go at once:
	// default 1, which keeps each run's CPU, RSS and I/O its own. Above 1,
	// a run in the daemon's process (every run without Isolate; verify
	// runs, scrubs and drills with it) is metered with the process, so its
	// usage includes that of the in-process runs overlapping it; a backup
	// in a child process (Isolate) is metered alone whatever overlaps it.
	MaxRuns int
	// Isolate, if set, runs each backup in a child process (Isolation).
	Isolate *Isolation
}

// Daemon is the scheduler and cycle runner.
type Daemon struct {
	opt Options
	log *slog.Logger

	mu     sync.Mutex
	cfg    *config.Config
	repos  map[string]*repoHandle
	next   map[string]time.Time   // policy -> next backup
	active map[string]*sync.Mutex // policy -> held while its cycle runs
	// lastSnap is the newest snapshot time per policy, from the repository.
	lastSnap map[string]time.Time
	ready    atomic.Bool
	// running is the run in progress of each policy, for Status.
	running map[string]*Running

	slots chan struct{} // one per run that may go at a time (Options.MaxRuns)

	// ticker makes the progress ticker of a backup (tests replace it).
	ticker func(time.Duration) (<-chan time.Time, func())
	// childFault is set once Isolation.Fault was handed to a child.
	childFault atomic.Bool
}

// Running is a run in progress, as Status shows it; a backup's counts are
// those of its last progress sample.
type Running struct {
	RunID          string       `json:"run_id"`
	Kind           results.Kind `json:"kind"`
	Start          time.Time    `json:"start"`
	Files          uint64       `json:"files"` // new, changed, unchanged and skipped so far
	FilesNew       uint64       `json:"files_new"`
	FilesChanged   uint64       `json:"files_changed"`
	FilesUnchanged uint64       `json:"files_unchanged"`
	FilesSkipped   uint64       `json:"files_skipped"`
	BytesRead      uint64       `json:"bytes_read"`
	BytesWritten   uint64       `json:"bytes_written"`
	// Updated is when the counts were sampled (zero before the first
	// sample).
	Updated time.Time `json:"updated,omitzero"`
}

func newTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

type repoHandle struct {
	cfg   config.Repository
	repo  *repository.Repo
	store *results.Store
}

// New validates options; it does no I/O.
func New(cfg *config.Config, opt Options) (*Daemon, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Hostname == "" {
		opt.Hostname, _ = os.Hostname()
	}
	if opt.Observer == nil {
		return nil, errors.New("daemon: an observer is required")
	}
	if opt.OpenBackend == nil {
		return nil, errors.New("daemon: OpenBackend is required")
	}
	if opt.ResultsKept == 0 {
		opt.ResultsKept = 200
	}
	if opt.ProgressInterval <= 0 {
		opt.ProgressInterval = time.Second
	}
	if opt.MaxRuns <= 0 {
		opt.MaxRuns = 1
	}
	if opt.Isolate != nil {
		iso := *opt.Isolate
		if iso.Path == "" || len(iso.Args) == 0 {
			return nil, errors.New("daemon: Isolate needs the child's executable and arguments")
		}
		if iso.Grace <= 0 {
			iso.Grace = 20 * time.Second
		}
		opt.Isolate = &iso
	}
	return &Daemon{opt: opt, log: opt.Logger.With("component", "daemon"), cfg: cfg,
		repos: map[string]*repoHandle{}, next: map[string]time.Time{}, active: map[string]*sync.Mutex{},
		lastSnap: map[string]time.Time{}, running: map[string]*Running{}, ticker: newTicker,
		slots: make(chan struct{}, opt.MaxRuns)}, nil
}

// clusterWork reports whether this daemon does the shared repository's
// retention and verify runs now (Options.ClusterWork).
func (d *Daemon) clusterWork() bool { return d.opt.ClusterWork == nil || d.opt.ClusterWork() }

// Ready reports whether every repository is open and its state loaded.
func (d *Daemon) Ready() bool { return d.ready.Load() }

func newRunID() string {
	var b [8]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// open opens every repository of cfg not yet open.
func (d *Daemon) open(ctx context.Context, cfg *config.Config) error {
	for _, rc := range cfg.Repositories {
		d.mu.Lock()
		h, ok := d.repos[rc.Name]
		d.mu.Unlock()
		if ok && h.cfg == rc {
			continue
		}
		pw, err := d.password(rc)
		if err != nil {
			return err
		}
		be, err := d.opt.OpenBackend(ctx, rc)
		if err != nil {
			return fmt.Errorf("repository %q: %w", rc.Name, err)
		}
		ropt := d.opt.RepoOptions
		if d.opt.RepoOptionsFor != nil {
			ropt = d.opt.RepoOptionsFor(rc, ropt)
		}
		ropt.Logger, ropt.Hostname = d.opt.Logger, d.opt.Hostname
		repo, err := repository.Open(ctx, be, pw, ropt)
		if err != nil {
			return fmt.Errorf("repository %q: %w", rc.Name, err)
		}
		store, err := results.Load(ctx, repo, hostsOf(cfg, rc.Name, d.opt.Hostname), d.opt.Now())
		if err != nil {
			return fmt.Errorf("repository %q: %w", rc.Name, err)
		}
		if store.Unreadable > 0 {
			d.log.Warn("skipped damaged run records; run 'backupd check'", "repository", rc.Name, "records", store.Unreadable)
		}
		d.mu.Lock()
		d.repos[rc.Name] = &repoHandle{cfg: rc, repo: repo, store: store}
		d.mu.Unlock()
		d.opt.Observer.Restored(store.Records())
		for _, r := range store.Interrupted() {
			d.log.Warn("a run was interrupted before this start; counted as failed", "policy", r.Policy, "kind", r.Kind, "run", r.RunID)
			d.opt.Observer.RunFinished(r)
		}
		d.refreshRepoState(ctx, rc.Name)
	}
	return nil
}

// password returns the password of repository rc: Options.Password's, or
// the config's (its file read, its variable looked up, now).
func (d *Daemon) password(rc config.Repository) ([]byte, error) {
	if d.opt.Password != nil {
		return d.opt.Password(rc)
	}
	return rc.Password()
}

// Run schedules until ctx ends. reload delivers new configs (from SIGHUP or
// a changed file); a config that fails to apply is logged and the old one
// kept.
func (d *Daemon) Run(ctx context.Context, reload <-chan *config.Config) error {
	if err := d.open(ctx, d.cfg); err != nil {
		return err
	}
	d.opt.Observer.Configured(d.cfg)
	d.ready.Store(true)
	// Schedules of every config generation; a reload does not wait for
	// the running cycles of the old one (a long backup must not hold up
	// the other policies, nor a node agent's new volumes): each finishes
	// under its config while the new schedules start.
	var all sync.WaitGroup
	defer all.Wait()
	start := func(cfg *config.Config) context.CancelFunc {
		schedCtx, stop := context.WithCancel(ctx)
		for _, p := range cfg.Policies {
			all.Add(1)
			go func() {
				defer all.Done()
				d.schedule(ctx, schedCtx, cfg, p)
			}()
		}
		return stop
	}
	d.mu.Lock()
	stop := start(d.cfg)
	d.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			stop()
			return nil
		case nc := <-reload:
			if err := d.open(ctx, nc); err != nil {
				d.log.Error("new config not applied; keeping the old one", "err", err)
				continue
			}
			d.mu.Lock()
			d.cfg = nc
			d.mu.Unlock()
			d.opt.Observer.Configured(nc)
			d.log.Info("config reloaded", "policies", len(nc.Policies))
			stop() // running cycles finish; the new schedules start now
			stop = start(nc)
		}
	}
}

func (d *Daemon) policyLock(name string) *sync.Mutex {
	d.mu.Lock()
	defer d.mu.Unlock()
	m, ok := d.active[name]
	if !ok {
		m = &sync.Mutex{}
		d.active[name] = m
	}
	return m
}

// schedule runs one policy's cycles until schedCtx ends. Runs use ctx, so a
// reload lets a running cycle finish; only shutdown interrupts it.
func (d *Daemon) schedule(ctx, schedCtx context.Context, cfg *config.Config, p config.Policy) {
	log := d.log.With("policy", p.Name)
	h := d.handle(p.Repository)
	now := d.opt.Now()
	// Missed while down, and catch-up.
	last := d.lastAttempt(h, p.Name)
	if !last.IsZero() {
		n := 0
		for t := p.Schedule.Next(last); t.Before(now) && n < 100000; t = p.Schedule.Next(t) {
			n++
		}
		if n > 1 {
			// The activation just before now is the one the catch-up
			// run below stands in for.
			d.opt.Observer.Missed(p.Name, n-1)
		}
	}
	interval := p.Schedule.Interval(now)
	newest := d.lastSuccess(p.Name)
	next := p.Schedule.Next(now)
	if newest.IsZero() || now.Sub(newest) > interval {
		next = now // run at once: the newest good snapshot is too old
	}
	for first := true; ; first = false {
		jitter := time.Duration(0)
		if cfg.Scheduler.Jitter > 0 {
			jitter = rand.N(cfg.Scheduler.Jitter)
		}
		at := next.Add(jitter)
		d.mu.Lock()
		d.next[p.Name] = at
		d.mu.Unlock()
		wait := time.NewTimer(max(0, at.Sub(d.opt.Now())))
		select {
		case <-schedCtx.Done():
			wait.Stop()
			return
		case <-wait.C:
		}
		lock := d.policyLock(p.Name)
		switch {
		case lock.TryLock():
		case first:
			// The policy's cycle under the previous config is still
			// running: this schedule's first activation follows it.
			lock.Lock()
			if schedCtx.Err() != nil {
				lock.Unlock()
				return
			}
		default:
			d.opt.Observer.Skipped(p.Name, "overlap")
			log.Warn("cycle skipped: the previous cycle of this policy is still running")
			next = p.Schedule.Next(d.opt.Now())
			continue
		}
		start := d.opt.Now()
		d.cycle(ctx, cfg, p)
		lock.Unlock()
		// Activations that passed while the cycle ran were skipped.
		end := d.opt.Now()
		skipped := 0
		t := p.Schedule.Next(start)
		for ; t.Before(end); t = p.Schedule.Next(t) {
			skipped++
		}
		for range skipped {
			d.opt.Observer.Skipped(p.Name, "overlap")
		}
		if skipped > 0 {
			log.Warn("cycle outlasted its schedule; activations skipped", "skipped", skipped)
		}
		next = t
		if ctx.Err() != nil {
			return
		}
	}
}

func (d *Daemon) handle(name string) *repoHandle {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.repos[name]
}

func (d *Daemon) lastAttempt(h *repoHandle, policy string) time.Time {
	var t time.Time
	for _, r := range h.store.Records() {
		if r.Kind == results.Backup && r.Policy == policy && r.Start.After(t) {
			t = r.Start
		}
	}
	return t
}

func (d *Daemon) lastSuccess(policy string) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastSnap[policy]
}

// cycle is backup, then verify and drill when due.
func (d *Daemon) cycle(ctx context.Context, cfg *config.Config, p config.Policy) {
	h := d.handle(p.Repository)
	if h == nil {
		return
	}
	d.runBackup(ctx, cfg, h, p, "scheduled")
	if ctx.Err() != nil {
		return
	}
	switch {
	case d.clusterWork() && d.due(h, p, results.Verify, p.Verify.Schedule):
		d.runVerify(ctx, cfg, h, p)
		d.runScrub(ctx, cfg, h, p)
	case !d.clusterWork() && d.due(h, p, results.Scrub, p.Verify.Schedule):
		// The repository's read-back is the leader's (Options.ClusterWork);
		// the source scrub is this node's.
		d.runScrub(ctx, cfg, h, p)
	}
	if ctx.Err() != nil {
		return
	}
	if p.Drill.Schedule.Schedule != nil && d.due(h, p, results.Drill, p.Drill.Schedule) { // nil: drills off (a node agent's policy)
		d.runDrill(ctx, cfg, h, p)
	}
}

// due reports whether a run of kind is due: its schedule fired since the
// last run of that kind (or there has been none).
func (d *Daemon) due(h *repoHandle, p config.Policy, kind results.Kind, s config.Schedule) bool {
	var last time.Time
	for _, r := range h.store.Records() {
		if r.Kind == kind && r.Policy == p.Name && r.Start.After(last) {
			last = r.Start
		}
	}
	return last.IsZero() || !s.Next(last).After(d.opt.Now())
}

// Status is the per-policy view served at /api/v1/status.
type Status struct {
	Policy       string    `json:"policy"`
	Repository   string    `json:"repository"`
	Source       string    `json:"source"`
	RPOSeconds   float64   `json:"rpo_seconds"`
	RTOSeconds   float64   `json:"rto_seconds"`
	NextBackup   time.Time `json:"next_backup"`
	LastSnapshot time.Time `json:"last_successful_backup,omitzero"`
	// Running is the policy's run in progress, if any.
	Running      *Running         `json:"running,omitempty"`
	LastBackups  []results.Record `json:"last_backups"`
	LastVerifies []results.Record `json:"last_verifies"`
	LastDrills   []results.Record `json:"last_drills"`
}

// Status returns the state of every configured policy.
func (d *Daemon) Status() []Status {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	var out []Status
	for _, p := range cfg.Policies {
		st := Status{Policy: p.Name, Repository: p.Repository, Source: p.Source, RPOSeconds: p.RPO.Seconds(), RTOSeconds: p.RTO.Seconds(),
			LastBackups: []results.Record{}, LastVerifies: []results.Record{}, LastDrills: []results.Record{}}
		d.mu.Lock()
		st.NextBackup = d.next[p.Name]
		st.LastSnapshot = d.lastSnap[p.Name]
		if r := d.running[p.Name]; r != nil {
			c := *r
			st.Running = &c
		}
		d.mu.Unlock()
		if h := d.handle(p.Repository); h != nil {
			recs := h.store.Records()
			for i := len(recs) - 1; i >= 0; i-- {
				r := recs[i]
				if r.Policy != p.Name {
					continue
				}
				switch {
				case r.Kind == results.Backup && len(st.LastBackups) < 5:
					st.LastBackups = append(st.LastBackups, r)
				case r.Kind == results.Verify && len(st.LastVerifies) < 5:
					st.LastVerifies = append(st.LastVerifies, r)
				case r.Kind == results.Drill && len(st.LastDrills) < 5:
					st.LastDrills = append(st.LastDrills, r)
				}
			}
		}
		out = append(out, st)
	}
	return out
}

// refreshRepoState recomputes the cached repository state.
func (d *Daemon) refreshRepoState(ctx context.Context, name string) {
	h := d.handle(name)
	st := RepoState{Name: name, Snapshots: map[string]int{}, LastBackupSuccess: map[string]time.Time{}}
	defer func() { d.opt.Observer.RepositoryState(st) }()
	be := h.repo.Backend()
	for _, t := range backend.Types {
		if err := be.List(ctx, t, func(fi backend.FileInfo) error {
			st.SizeBytes += uint64(fi.Size)
			return nil
		}); err != nil {
			d.log.Warn("repository unreachable", "repository", name, "err", err)
			return
		}
	}
	r, err := h.repo.Fresh()
	if err != nil {
		return
	}
	snaps, _, err := snapshot.LoadAll(ctx, r)
	if err != nil {
		d.log.Warn("repository unreachable", "repository", name, "err", err)
		return
	}
	st.Up = true
	// Invariant: a suspect snapshot (a volume not mounted, backed up on
	// another device) never makes a policy look fresh: the RPO counts from
	// the newest one that is not. A partial one counts (BackupdBackupIncomplete
	// reports what it lacks).
	latest := map[string]*snapshot.Snapshot{}
	for _, s := range snaps {
		st.Snapshots[s.Policy]++
		if l := latest[s.Policy]; s.Suspect == "" && (l == nil || s.Seq > l.Seq) {
			latest[s.Policy] = s
		}
	}
	d.mu.Lock()
	for pol, s := range latest {
		st.LogicalBytes += s.Totals.BytesTotal
		// The snapshot's time is when the backup started: the data is at
		// least that fresh.
		st.LastBackupSuccess[pol] = s.Time
		d.lastSnap[pol] = s.Time
	}
	d.mu.Unlock()
	if sr, ok := backend.As[backend.SpaceReporter](be); ok {
		free, err := sr.FreeBytes()
		if err != nil {
			d.log.Warn("free space unknown", "repository", name, "err", err)
		} else {
			st.FreeBytes, st.HasFreeBytes = free, true
		}
	}
}

// hostsOf returns the host names the daemon's runs on repository repo carry
// (docs/DESIGN.md §3.6): a run that one of them started and never finished
// was this daemon's, or an earlier instance's under the same configured
// host (a pod rescheduled), and is closed as interrupted.
func hostsOf(cfg *config.Config, repo, hostname string) []string {
	hosts := []string{hostname}
	for _, p := range cfg.Policies {
		if h := cfg.HostFor(p, hostname); p.Repository == repo && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}
