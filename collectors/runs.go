package collectors

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/results"
)

const ns = "backupd"

// Kinds of runs (the `kind` label) the daemon produces; "manual" appears
// once the daemon takes manual triggers (not yet: docs/DESIGN.md §1).
var (
	backupKinds  = []string{"scheduled"}
	restoreKinds = []string{"drill"}
	fileStates   = []string{"new", "changed", "unchanged", "skipped", "unreadable"}
	skipReasons  = []string{"overlap"}
)

// Runs holds the run, scheduler, restore, verify and repository metrics.
// It is a prometheus.Gatherer serving them from its cache of encoded
// series (cache.go); Register also registers the vectors themselves with a
// registry, which then gathers them the slow way.
type Runs struct {
	mu       sync.Mutex
	policies map[string]config.Policy // configured, by name
	// removed are the policies a config removed, with when: a run of
	// theirs that was still going counts into no series (it would bring
	// back the series Configured deleted, for good: a node agent's volume
	// that moved away or whose pod was deleted).
	removed map[string]time.Time
	// configured is set by the first Configured; early are the policies
	// whose repository series RepositoryState set before it (the daemon
	// opens its repositories first), deleted then unless configured.
	configured bool
	early      map[string]bool
	repos      map[string]bool

	// reported holds, per running backup (by run id), the counts its
	// RunProgress calls have already added; RunFinished adds the rest.
	progressMu sync.Mutex
	reported   map[string]results.Record

	cache seriesCache
	all   []cachedVec // every vector, for Register and deletion

	backupRuns, backupFailures, readBytes, writtenBytes, files, cpu counterVec
	ioRead, ioWritten                                               counterVec
	consecutive, inProgress, maxRSS, lastSuccess, lastAttempt       gaugeVec
	lastDuration, lastRead, lastWritten                             gaugeVec
	backupDuration                                                  histogramVec
	rpo, rto                                                        gaugeVec
	missed, skipped                                                 counterVec
	restoreRuns, restoreFailures, withinRTO, mismatched             counterVec
	restoreDuration                                                 histogramVec
	lastDrill, lastDrillAttempt, drillInterval                      gaugeVec
	verifyRuns, verifyFailures, blobsChecked, blobsCorrupt          counterVec
	coverage, lastVerify                                            gaugeVec
	repoUp, repoSize, repoLogical, repoFree, repoSnapshots          gaugeVec
	silent, partial                                                 counterVec
	unreadable                                                      gaugeVec
}

type cachedVec struct {
	c interface {
		prometheus.Collector
		deleter
	}
	f *cachedFamily
}

var _ daemon.Observer = (*Runs)(nil)

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, labels)
}

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, labels)
}

// durationBuckets cover a seconds-long drill to a many-hour first backup;
// native buckets give finer quantiles to servers that scrape them.
var durationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800}

func histogram(name, help string, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, Buckets: durationBuckets,
		NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 100, NativeHistogramMinResetDuration: time.Hour}, labels)
}

func (m *Runs) counter(name, help string, labels ...string) counterVec {
	v := counterVec{counter(name, help, labels...), m.cache.family(name, help, dto.MetricType_COUNTER, labels), &m.cache}
	m.all = append(m.all, cachedVec{v, v.f})
	return v
}

func (m *Runs) gauge(name, help string, labels ...string) gaugeVec {
	v := gaugeVec{gauge(name, help, labels...), m.cache.family(name, help, dto.MetricType_GAUGE, labels), &m.cache}
	m.all = append(m.all, cachedVec{v, v.f})
	return v
}

func (m *Runs) histogram(name, help string, labels ...string) histogramVec {
	v := histogramVec{histogram(name, help, labels...), m.cache.family(name, help, dto.MetricType_HISTOGRAM, labels), &m.cache}
	m.all = append(m.all, cachedVec{v, v.f})
	return v
}

// NewRuns returns the run metrics; register them with Register.
func NewRuns() *Runs {
	m := &Runs{policies: map[string]config.Policy{}, removed: map[string]time.Time{}, early: map[string]bool{}, repos: map[string]bool{}, reported: map[string]results.Record{}}
	m.backupRuns = m.counter("backup_runs_total", "Backup runs completed, successful or not.", "policy", "kind")
	m.backupFailures = m.counter("backup_failures_total", "Backup runs that failed, by reason.", "policy", "kind", "reason")
	m.consecutive = m.gauge("backup_consecutive_failures", "Backup runs that failed in a row (0 after a success).", "policy")
	m.backupDuration = m.histogram("backup_duration_seconds", "Duration of completed backup runs (partial ones included). Failed runs are left out: how long a run took to fail says nothing of how long a backup takes and would skew the quantiles; backup_failures_total counts them by reason.", "policy")
	m.inProgress = m.gauge("backup_in_progress", "1 while a backup of the policy runs.", "policy")
	m.readBytes = m.counter("backup_read_bytes_total", "Source bytes read by backups, counted while they run (at most once a second).", "policy")
	m.writtenBytes = m.counter("backup_written_bytes_total", "Bytes stored by backups after deduplication and compression, counted while they run (at most once a second).", "policy")
	m.files = m.counter("backup_files_total", "Files seen by backups, by state (new, changed, unchanged, skipped, unreadable), counted while they run (at most once a second; unreadable at the end).", "policy", "state")
	m.partial = m.counter("backup_partial_total", "Backup runs that saved their snapshot without some files they could not read (counted in backup_runs_total, not as failures).", "policy")
	m.unreadable = m.gauge("last_backup_unreadable_files", "Files the last completed backup could not read: its snapshot lacks them.", "policy")
	m.cpu = m.counter("backup_cpu_seconds_total", "CPU seconds used by backup runs.", "policy")
	m.ioRead = m.counter("backup_io_read_bytes_total", "Bytes the process read from storage devices during backup runs (/proc/self/io).", "policy")
	m.ioWritten = m.counter("backup_io_written_bytes_total", "Bytes the process wrote to storage devices during backup runs (/proc/self/io).", "policy")
	m.maxRSS = m.gauge("last_backup_max_rss_bytes", "Peak resident memory of the process during the last backup run.", "policy")
	m.lastDuration = m.gauge("last_backup_duration_seconds", "Duration of the last completed backup run (partial ones included).", "policy")
	m.lastRead = m.gauge("last_backup_read_bytes", "Source bytes the last completed backup run read.", "policy")
	m.lastWritten = m.gauge("last_backup_written_bytes", "Bytes the last completed backup run stored, after deduplication and compression.", "policy")
	m.lastSuccess = m.gauge("last_backup_success_timestamp_seconds", "Time of the newest good snapshot, read from the repository.", "policy")
	m.lastAttempt = m.gauge("last_backup_attempt_timestamp_seconds", "Start time of the last backup run.", "policy")
	m.rpo = m.gauge("policy_rpo_seconds", "Recovery point objective of the policy.", "policy")
	m.rto = m.gauge("policy_rto_seconds", "Recovery time objective of the policy.", "policy")
	m.missed = m.counter("scheduler_missed_runs_total", "Scheduled runs missed while the daemon was down.", "policy")
	m.skipped = m.counter("scheduler_skipped_runs_total", "Scheduled runs skipped, by reason (overlap: the previous cycle still ran).", "policy", "reason")
	m.restoreRuns = m.counter("restore_runs_total", "Restores completed (drills and manual), successful or not.", "policy", "kind")
	m.restoreFailures = m.counter("restore_failures_total", "Restores that failed, by reason.", "policy", "kind", "reason")
	m.restoreDuration = m.histogram("restore_duration_seconds", "Duration of restores that succeeded or only missed the RTO. Other failed restores are left out (their duration is when they failed); restore_failures_total counts them by reason.", "policy", "kind")
	m.withinRTO = m.counter("restore_drills_within_rto_total", "Drills that succeeded, proved every file byte-exact and finished within the RTO.", "policy")
	m.mismatched = m.counter("restore_drill_mismatched_files_total", "Files whose restored content differed from the recorded hash.", "policy")
	m.lastDrill = m.gauge("last_restore_drill_success_timestamp_seconds", "End time of the last successful restore drill.", "policy")
	m.lastDrillAttempt = m.gauge("last_restore_drill_timestamp_seconds", "End time of the last restore drill, successful or not.", "policy")
	m.drillInterval = m.gauge("policy_drill_interval_seconds", "Time between restore drills by the policy's drill schedule.", "policy")
	m.verifyRuns = m.counter("verify_runs_total", "Verify (read-back) runs completed.", "repository")
	m.verifyFailures = m.counter("verify_failures_total", "Verify runs that failed or found damage.", "repository")
	m.blobsChecked = m.counter("verify_blobs_checked_total", "Blobs read back, decrypted and re-hashed.", "repository")
	m.blobsCorrupt = m.counter("verify_blobs_corrupt_total", "Blobs found corrupt by read-back.", "repository")
	m.coverage = m.gauge("verify_coverage_ratio", "Share of the repository's packs read back in the current rotation.", "repository")
	m.lastVerify = m.gauge("last_verify_success_timestamp_seconds", "End time of the last verify run that found no damage.", "repository")
	m.repoUp = m.gauge("repository_up", "1 if the repository could be read at the last refresh.", "repository")
	m.repoSize = m.gauge("repository_size_bytes", "Bytes stored in the repository.", "repository")
	m.repoLogical = m.gauge("repository_logical_bytes", "Bytes of source data in the newest snapshot of each policy, summed.", "repository")
	m.repoFree = m.gauge("repository_free_bytes", "Free bytes on the repository's file system (absent for object storage, which reports none).", "repository")
	m.repoSnapshots = m.gauge("repository_snapshots", "Snapshots in the repository.", "repository", "policy")
	m.silent = m.counter("source_silent_changes_total", "Files whose content changed while their size and mtime did not: with ctime and inode unchanged too (found by scrub, or by a backup's periodic full read of an append-only file), or with only the ctime moved (found by a backup).", "policy")
	return m
}

func (m *Runs) collectors() []prometheus.Collector {
	out := make([]prometheus.Collector, 0, len(m.all))
	for _, v := range m.all {
		out = append(out, v.c)
	}
	return out
}

// Register adds the metrics to reg.
func (m *Runs) Register(reg prometheus.Registerer) error {
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Gather returns the metrics from the cache of encoded series: what a
// registry with the vectors registered would gather, at the cost of a slice
// copy per family.
func (m *Runs) Gather() ([]*dto.MetricFamily, error) { return m.cache.gather(), nil }

// deletePolicy deletes every series of the policy.
func (m *Runs) deletePolicy(name string) {
	m.cache.mu.Lock()
	defer m.cache.mu.Unlock()
	for _, v := range m.all {
		v.c.DeletePartialMatch(prometheus.Labels{"policy": name})
		v.f.deleteMatching("policy", name)
	}
}

// Configured pre-creates the series of every policy and repository and
// deletes those of policies no longer configured.
func (m *Runs) Configured(cfg *config.Config) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := map[string]config.Policy{}
	for _, p := range cfg.Policies {
		now[p.Name] = p
	}
	t := time.Now()
	for name, at := range m.removed {
		if _, ok := now[name]; ok || t.Sub(at) > removedKept {
			delete(m.removed, name)
		}
	}
	for name := range m.policies {
		if _, ok := now[name]; !ok {
			m.deletePolicy(name)
			m.removed[name] = t
		}
	}
	for name := range m.early {
		if _, ok := now[name]; !ok {
			m.deletePolicy(name) // another daemon's, in a shared repository
		}
	}
	m.policies, m.early, m.configured = now, map[string]bool{}, true
	for _, p := range cfg.Policies {
		n := p.Name
		for _, k := range backupKinds {
			m.backupRuns.touch(n, k)
			for _, r := range results.Reasons {
				m.backupFailures.touch(n, k, r)
			}
		}
		for _, k := range restoreKinds {
			m.restoreRuns.touch(n, k)
			for _, r := range results.Reasons {
				m.restoreFailures.touch(n, k, r)
			}
		}
		for _, s := range fileStates {
			m.files.touch(n, s)
		}
		for _, r := range skipReasons {
			m.skipped.touch(n, r)
		}
		m.backupDuration.touch(n)
		m.restoreDuration.touch(n, "drill")
		for _, c := range []counterVec{m.readBytes, m.writtenBytes, m.cpu, m.ioRead, m.ioWritten, m.missed, m.withinRTO, m.mismatched, m.silent, m.partial} {
			c.touch(n)
		}
		// Timestamps start at 0 ("never"): a policy without a good backup
		// is out of its RPO, which is what the rules should say.
		for _, g := range []gaugeVec{m.consecutive, m.inProgress, m.maxRSS, m.unreadable, m.lastDuration, m.lastRead, m.lastWritten,
			m.lastSuccess, m.lastAttempt, m.lastDrill, m.lastDrillAttempt} {
			g.touch(n)
		}
		m.rpo.set(p.RPO.Seconds(), n)
		m.rto.set(p.RTO.Seconds(), n)
		if p.Drill.Schedule.Schedule != nil {
			m.drillInterval.set(p.Drill.Schedule.Interval(time.Now()).Seconds(), n)
		}
		m.repoSnapshots.touch(p.Repository, n)
	}
	for _, r := range cfg.Repositories {
		m.repos[r.Name] = true
		for _, c := range []counterVec{m.verifyRuns, m.verifyFailures, m.blobsChecked, m.blobsCorrupt} {
			c.touch(r.Name)
		}
		// repository_free_bytes is not pre-created: it exists only for a
		// repository whose backend reports free space (RepositoryState).
		for _, g := range []gaugeVec{m.coverage, m.repoUp, m.lastVerify, m.repoSize, m.repoLogical} {
			g.touch(r.Name)
		}
	}
}

// removedKept is how long runs of a removed policy are left uncounted:
// longer than any run.
const removedKept = 24 * time.Hour

// isRemoved reports whether a config removed the policy (its series are
// gone and must stay so).
func (m *Runs) isRemoved(policy string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.removed[policy]
	return ok
}

func ts(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// Restored sets the "last" gauges from the records kept in a repository.
func (m *Runs) Restored(recs []results.Record) {
	streak := map[string]int{}
	for _, r := range recs { // oldest first
		m.setLast(r, streak)
	}
}

func (m *Runs) setLast(r results.Record, streak map[string]int) {
	switch r.Kind {
	case results.Backup:
		m.lastAttempt.set(ts(r.Start), r.Policy)
		if r.Completed() {
			streak[r.Policy] = 0
			m.setLastCompleted(r)
			m.unreadable.set(float64(r.FilesUnreadable), r.Policy)
		} else {
			streak[r.Policy]++
		}
		m.consecutive.set(float64(streak[r.Policy]), r.Policy)
	case results.Drill:
		m.lastDrillAttempt.set(ts(r.End), r.Policy)
		if r.Outcome == results.Success {
			m.lastDrill.set(ts(r.End), r.Policy)
		}
	case results.Verify:
		if r.Outcome == results.Success {
			m.lastVerify.set(ts(r.End), r.Repository)
			m.coverage.set(r.Coverage, r.Repository)
		}
	}
}

// setLastCompleted sets the gauges of the last completed backup.
func (m *Runs) setLastCompleted(r results.Record) {
	m.maxRSS.set(float64(r.MaxRSS), r.Policy)
	m.lastDuration.set(r.Duration().Seconds(), r.Policy)
	m.lastRead.set(float64(r.BytesRead), r.Policy)
	m.lastWritten.set(float64(r.BytesWritten), r.Policy)
}

// RunStarted marks a backup in progress.
func (m *Runs) RunStarted(r results.Record) {
	if r.Kind == results.Backup && !m.isRemoved(r.Policy) {
		m.inProgress.set(1, r.Policy)
		m.lastAttempt.set(ts(r.Start), r.Policy)
	}
}

// RunProgress adds what a running backup read, wrote and counted since
// its last report, so rates show live throughput.
func (m *Runs) RunProgress(r results.Record) {
	if r.Kind != results.Backup || m.isRemoved(r.Policy) {
		return
	}
	m.progressMu.Lock()
	defer m.progressMu.Unlock()
	m.addBackupCounts(r, m.reported[r.RunID])
	m.reported[r.RunID] = r
}

// addBackupCounts adds the counts of r beyond those of before, already
// added by progress reports of the same run.
func (m *Runs) addBackupCounts(r, before results.Record) {
	delta := func(now, was uint64) float64 {
		if now < was {
			return 0
		}
		return float64(now - was)
	}
	m.readBytes.add(delta(r.BytesRead, before.BytesRead), r.Policy)
	m.writtenBytes.add(delta(r.BytesWritten, before.BytesWritten), r.Policy)
	m.files.add(delta(r.FilesNew, before.FilesNew), r.Policy, "new")
	m.files.add(delta(r.FilesChanged, before.FilesChanged), r.Policy, "changed")
	m.files.add(delta(r.FilesUnchanged, before.FilesUnchanged), r.Policy, "unchanged")
	m.files.add(delta(r.FilesSkipped, before.FilesSkipped), r.Policy, "skipped")
	m.files.add(delta(r.FilesUnreadable, before.FilesUnreadable), r.Policy, "unreadable")
}

func exemplar(r results.Record) prometheus.Labels { return prometheus.Labels{"run_id": r.RunID} }

// RunFinished counts a finished run; not one of a policy a config removed
// while it ran (its series are gone).
func (m *Runs) RunFinished(r results.Record) {
	if r.Kind != results.Verify && m.isRemoved(r.Policy) {
		m.progressMu.Lock()
		delete(m.reported, r.RunID)
		m.progressMu.Unlock()
		return
	}
	failed := r.Outcome != results.Success
	reason := r.Reason
	if reason == "" {
		reason = results.ReasonOther
	}
	switch r.Kind {
	case results.Backup:
		kind := r.Trigger
		if kind != "manual" {
			kind = "scheduled"
		}
		m.inProgress.set(0, r.Policy)
		m.backupRuns.addEx(1, r, r.Policy, kind)
		m.silent.add(float64(r.SilentChanges), r.Policy)
		failed = !r.Completed()
		if r.Completed() {
			m.unreadable.set(float64(r.FilesUnreadable), r.Policy)
		}
		if r.Outcome == results.Partial {
			m.partial.addEx(1, r, r.Policy)
		}
		if failed {
			m.backupFailures.addEx(1, r, r.Policy, kind, reason)
			m.consecutive.inc(r.Policy)
		} else {
			m.consecutive.set(0, r.Policy)
			m.backupDuration.observe(r.Duration().Seconds(), r, r.Policy)
			m.setLastCompleted(r)
		}
		// Only what progress reports have not added yet.
		m.progressMu.Lock()
		m.addBackupCounts(r, m.reported[r.RunID])
		delete(m.reported, r.RunID)
		m.progressMu.Unlock()
		m.cpu.add(r.CPUSeconds, r.Policy)
		m.ioRead.add(float64(r.ReadIOBytes), r.Policy)
		m.ioWritten.add(float64(r.WriteIOBytes), r.Policy)
	case results.Drill:
		m.restoreRuns.addEx(1, r, r.Policy, "drill")
		m.mismatched.add(float64(r.MismatchedFiles), r.Policy)
		if failed {
			m.restoreFailures.addEx(1, r, r.Policy, "drill", reason)
		}
		if r.Outcome == results.Success || reason == results.ReasonRTO {
			m.restoreDuration.observe(r.Duration().Seconds(), r, r.Policy, "drill")
		}
		if r.WithinRTO {
			m.withinRTO.addEx(1, r, r.Policy)
		}
		m.lastDrillAttempt.set(ts(r.End), r.Policy)
		if r.Outcome == results.Success {
			m.lastDrill.set(ts(r.End), r.Policy)
		}
	case results.Verify:
		m.verifyRuns.addEx(1, r, r.Repository)
		m.blobsChecked.add(float64(r.BlobsChecked), r.Repository)
		m.blobsCorrupt.add(float64(r.BlobsCorrupt), r.Repository)
		if failed {
			m.verifyFailures.addEx(1, r, r.Repository)
		} else {
			m.lastVerify.set(ts(r.End), r.Repository)
			m.coverage.set(r.Coverage, r.Repository)
		}
	case results.Scrub:
		m.silent.add(float64(r.SilentChanges), r.Policy)
	}
}

// Skipped counts a skipped run.
func (m *Runs) Skipped(policy, reason string) {
	if !m.isRemoved(policy) {
		m.skipped.add(1, policy, reason)
	}
}

// Missed counts runs missed while the daemon was down.
func (m *Runs) Missed(policy string, n int) { m.missed.add(float64(n), policy) }

// RepositoryState publishes the cached repository state.
func (m *Runs) RepositoryState(s daemon.RepoState) {
	up := 0.0
	if s.Up {
		up = 1
	}
	m.repoUp.set(up, s.Name)
	if !s.Up {
		return
	}
	m.repoSize.set(float64(s.SizeBytes), s.Name)
	m.repoLogical.set(float64(s.LogicalBytes), s.Name)
	if s.HasFreeBytes {
		m.repoFree.set(float64(s.FreeBytes), s.Name)
	} else {
		// An object store has no free space: no series rather than 0,
		// which would look like a full disk.
		m.repoFree.remove(s.Name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	// Only configured policies: a shared repository holds other daemons'
	// (other nodes' volumes), whose series are theirs.
	mine := func(pol string) bool {
		if !m.configured {
			m.early[pol] = true
			return true
		}
		_, ok := m.policies[pol]
		return ok
	}
	for pol, n := range s.Snapshots {
		if mine(pol) {
			m.repoSnapshots.set(float64(n), s.Name, pol)
		}
	}
	for pol, t := range s.LastBackupSuccess {
		if mine(pol) {
			m.lastSuccess.set(ts(t), pol)
		}
	}
}
