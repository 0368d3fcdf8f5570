package collectors

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
type Runs struct {
	mu       sync.Mutex
	policies map[string]config.Policy // configured, by name
	repos    map[string]bool

	backupRuns, backupFailures, readBytes, writtenBytes, files, cpu *prometheus.CounterVec
	ioRead, ioWritten                                               *prometheus.CounterVec
	consecutive, inProgress, maxRSS, lastSuccess, lastAttempt       *prometheus.GaugeVec
	backupDuration                                                  *prometheus.HistogramVec
	rpo, rto                                                        *prometheus.GaugeVec
	missed, skipped                                                 *prometheus.CounterVec
	restoreRuns, restoreFailures, withinRTO, mismatched             *prometheus.CounterVec
	restoreDuration                                                 *prometheus.HistogramVec
	lastDrill, lastDrillAttempt, drillInterval                      *prometheus.GaugeVec
	verifyRuns, verifyFailures, blobsChecked, blobsCorrupt          *prometheus.CounterVec
	coverage, lastVerify                                            *prometheus.GaugeVec
	repoUp, repoSize, repoLogical, repoFree, repoSnapshots          *prometheus.GaugeVec
	silent, partial                                                 *prometheus.CounterVec
	unreadable                                                      *prometheus.GaugeVec
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

// NewRuns returns the run metrics; register them with Register.
func NewRuns() *Runs {
	return &Runs{
		policies: map[string]config.Policy{}, repos: map[string]bool{},
		backupRuns:       counter("backup_runs_total", "Backup runs completed, successful or not.", "policy", "kind"),
		backupFailures:   counter("backup_failures_total", "Backup runs that failed, by reason.", "policy", "kind", "reason"),
		consecutive:      gauge("backup_consecutive_failures", "Backup runs that failed in a row (0 after a success).", "policy"),
		backupDuration:   histogram("backup_duration_seconds", "Duration of successful backup runs.", "policy"),
		inProgress:       gauge("backup_in_progress", "1 while a backup of the policy runs.", "policy"),
		readBytes:        counter("backup_read_bytes_total", "Source bytes read by backups.", "policy"),
		writtenBytes:     counter("backup_written_bytes_total", "Bytes stored by backups after deduplication and compression.", "policy"),
		files:            counter("backup_files_total", "Files seen by backups, by state (new, changed, unchanged, skipped, unreadable).", "policy", "state"),
		partial:          counter("backup_partial_total", "Backup runs that saved their snapshot without some files they could not read (counted in backup_runs_total, not as failures).", "policy"),
		unreadable:       gauge("last_backup_unreadable_files", "Files the last completed backup could not read: its snapshot lacks them.", "policy"),
		cpu:              counter("backup_cpu_seconds_total", "CPU seconds used by backup runs.", "policy"),
		ioRead:           counter("backup_io_read_bytes_total", "Bytes the process read from storage devices during backup runs (/proc/self/io).", "policy"),
		ioWritten:        counter("backup_io_written_bytes_total", "Bytes the process wrote to storage devices during backup runs (/proc/self/io).", "policy"),
		maxRSS:           gauge("last_backup_max_rss_bytes", "Peak resident memory of the process during the last backup run.", "policy"),
		lastSuccess:      gauge("last_backup_success_timestamp_seconds", "Time of the newest good snapshot, read from the repository.", "policy"),
		lastAttempt:      gauge("last_backup_attempt_timestamp_seconds", "Start time of the last backup run.", "policy"),
		rpo:              gauge("policy_rpo_seconds", "Recovery point objective of the policy.", "policy"),
		rto:              gauge("policy_rto_seconds", "Recovery time objective of the policy.", "policy"),
		missed:           counter("scheduler_missed_runs_total", "Scheduled runs missed while the daemon was down.", "policy"),
		skipped:          counter("scheduler_skipped_runs_total", "Scheduled runs skipped, by reason (overlap: the previous cycle still ran).", "policy", "reason"),
		restoreRuns:      counter("restore_runs_total", "Restores completed (drills and manual), successful or not.", "policy", "kind"),
		restoreFailures:  counter("restore_failures_total", "Restores that failed, by reason.", "policy", "kind", "reason"),
		restoreDuration:  histogram("restore_duration_seconds", "Duration of successful restores.", "policy", "kind"),
		withinRTO:        counter("restore_drills_within_rto_total", "Drills that succeeded, proved every file byte-exact and finished within the RTO.", "policy"),
		mismatched:       counter("restore_drill_mismatched_files_total", "Files whose restored content differed from the recorded hash.", "policy"),
		lastDrill:        gauge("last_restore_drill_success_timestamp_seconds", "End time of the last successful restore drill.", "policy"),
		lastDrillAttempt: gauge("last_restore_drill_timestamp_seconds", "End time of the last restore drill, successful or not.", "policy"),
		drillInterval:    gauge("policy_drill_interval_seconds", "Time between restore drills by the policy's drill schedule.", "policy"),
		verifyRuns:       counter("verify_runs_total", "Verify (read-back) runs completed.", "repository"),
		verifyFailures:   counter("verify_failures_total", "Verify runs that failed or found damage.", "repository"),
		blobsChecked:     counter("verify_blobs_checked_total", "Blobs read back, decrypted and re-hashed.", "repository"),
		blobsCorrupt:     counter("verify_blobs_corrupt_total", "Blobs found corrupt by read-back.", "repository"),
		coverage:         gauge("verify_coverage_ratio", "Share of the repository's packs read back in the current rotation.", "repository"),
		lastVerify:       gauge("last_verify_success_timestamp_seconds", "End time of the last verify run that found no damage.", "repository"),
		repoUp:           gauge("repository_up", "1 if the repository could be read at the last refresh.", "repository"),
		repoSize:         gauge("repository_size_bytes", "Bytes stored in the repository.", "repository"),
		repoLogical:      gauge("repository_logical_bytes", "Bytes of source data in the newest snapshot of each policy, summed.", "repository"),
		repoFree:         gauge("repository_free_bytes", "Free bytes on the repository's file system.", "repository"),
		repoSnapshots:    gauge("repository_snapshots", "Snapshots in the repository.", "repository", "policy"),
		silent:           counter("source_silent_changes_total", "Files whose content changed while mtime, ctime, size and inode did not (found by scrub, or by a backup's periodic full read of an append-only file).", "policy"),
	}
}

func (m *Runs) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.backupRuns, m.backupFailures, m.consecutive, m.backupDuration, m.inProgress, m.readBytes,
		m.writtenBytes, m.files, m.cpu, m.ioRead, m.ioWritten, m.maxRSS, m.lastSuccess, m.lastAttempt, m.rpo, m.rto, m.missed, m.skipped,
		m.restoreRuns, m.restoreFailures, m.restoreDuration, m.withinRTO, m.mismatched, m.lastDrill, m.lastDrillAttempt, m.drillInterval, m.verifyRuns,
		m.verifyFailures, m.blobsChecked, m.blobsCorrupt, m.coverage, m.lastVerify, m.repoUp, m.repoSize, m.repoLogical,
		m.repoFree, m.repoSnapshots, m.silent, m.partial, m.unreadable}
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

// Configured pre-creates the series of every policy and repository and
// deletes those of policies no longer configured.
func (m *Runs) Configured(cfg *config.Config) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := map[string]config.Policy{}
	for _, p := range cfg.Policies {
		now[p.Name] = p
	}
	for name := range m.policies {
		if _, ok := now[name]; !ok {
			for _, c := range m.collectors() {
				if v, ok := c.(interface {
					DeletePartialMatch(prometheus.Labels) int
				}); ok {
					v.DeletePartialMatch(prometheus.Labels{"policy": name})
				}
			}
		}
	}
	m.policies = now
	for _, p := range cfg.Policies {
		n := p.Name
		for _, k := range backupKinds {
			m.backupRuns.WithLabelValues(n, k)
			for _, r := range results.Reasons {
				m.backupFailures.WithLabelValues(n, k, r)
			}
		}
		for _, k := range restoreKinds {
			m.restoreRuns.WithLabelValues(n, k)
			for _, r := range results.Reasons {
				m.restoreFailures.WithLabelValues(n, k, r)
			}
		}
		for _, s := range fileStates {
			m.files.WithLabelValues(n, s)
		}
		for _, r := range skipReasons {
			m.skipped.WithLabelValues(n, r)
		}
		m.backupDuration.WithLabelValues(n)
		m.restoreDuration.WithLabelValues(n, "drill")
		m.consecutive.WithLabelValues(n)
		m.inProgress.WithLabelValues(n)
		m.readBytes.WithLabelValues(n)
		m.writtenBytes.WithLabelValues(n)
		m.cpu.WithLabelValues(n)
		m.ioRead.WithLabelValues(n)
		m.ioWritten.WithLabelValues(n)
		m.maxRSS.WithLabelValues(n)
		m.missed.WithLabelValues(n)
		m.withinRTO.WithLabelValues(n)
		m.mismatched.WithLabelValues(n)
		m.silent.WithLabelValues(n)
		m.partial.WithLabelValues(n)
		m.unreadable.WithLabelValues(n)
		// Timestamps start at 0 ("never"): a policy without a good backup
		// is out of its RPO, which is what the rules should say.
		m.lastSuccess.WithLabelValues(n)
		m.lastAttempt.WithLabelValues(n)
		m.lastDrill.WithLabelValues(n)
		m.lastDrillAttempt.WithLabelValues(n)
		m.rpo.WithLabelValues(n).Set(p.RPO.Seconds())
		m.rto.WithLabelValues(n).Set(p.RTO.Seconds())
		if p.Drill.Schedule.Schedule != nil {
			m.drillInterval.WithLabelValues(n).Set(p.Drill.Schedule.Interval(time.Now()).Seconds())
		}
		m.repoSnapshots.WithLabelValues(p.Repository, n)
	}
	for _, r := range cfg.Repositories {
		m.repos[r.Name] = true
		for _, c := range []*prometheus.CounterVec{m.verifyRuns, m.verifyFailures, m.blobsChecked, m.blobsCorrupt} {
			c.WithLabelValues(r.Name)
		}
		m.coverage.WithLabelValues(r.Name)
		m.repoUp.WithLabelValues(r.Name)
		m.lastVerify.WithLabelValues(r.Name)
		m.repoSize.WithLabelValues(r.Name)
		m.repoLogical.WithLabelValues(r.Name)
		m.repoFree.WithLabelValues(r.Name)
	}
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
		m.lastAttempt.WithLabelValues(r.Policy).Set(ts(r.Start))
		if r.Completed() {
			streak[r.Policy] = 0
			m.maxRSS.WithLabelValues(r.Policy).Set(float64(r.MaxRSS))
			m.unreadable.WithLabelValues(r.Policy).Set(float64(r.FilesUnreadable))
		} else {
			streak[r.Policy]++
		}
		m.consecutive.WithLabelValues(r.Policy).Set(float64(streak[r.Policy]))
	case results.Drill:
		m.lastDrillAttempt.WithLabelValues(r.Policy).Set(ts(r.End))
		if r.Outcome == results.Success {
			m.lastDrill.WithLabelValues(r.Policy).Set(ts(r.End))
		}
	case results.Verify:
		if r.Outcome == results.Success {
			m.lastVerify.WithLabelValues(r.Repository).Set(ts(r.End))
			m.coverage.WithLabelValues(r.Repository).Set(r.Coverage)
		}
	}
}

// RunStarted marks a backup in progress.
func (m *Runs) RunStarted(r results.Record) {
	if r.Kind == results.Backup {
		m.inProgress.WithLabelValues(r.Policy).Set(1)
		m.lastAttempt.WithLabelValues(r.Policy).Set(ts(r.Start))
	}
}

func exemplar(r results.Record) prometheus.Labels { return prometheus.Labels{"run_id": r.RunID} }

func addWithExemplar(c prometheus.Counter, v float64, r results.Record) {
	if ea, ok := c.(prometheus.ExemplarAdder); ok {
		ea.AddWithExemplar(v, exemplar(r))
		return
	}
	c.Add(v)
}

func observe(o prometheus.Observer, v float64, r results.Record) {
	if eo, ok := o.(prometheus.ExemplarObserver); ok {
		eo.ObserveWithExemplar(v, exemplar(r))
		return
	}
	o.Observe(v)
}

// RunFinished counts a finished run.
func (m *Runs) RunFinished(r results.Record) {
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
		m.inProgress.WithLabelValues(r.Policy).Set(0)
		addWithExemplar(m.backupRuns.WithLabelValues(r.Policy, kind), 1, r)
		m.silent.WithLabelValues(r.Policy).Add(float64(r.SilentChanges))
		failed = !r.Completed()
		if r.Completed() {
			m.unreadable.WithLabelValues(r.Policy).Set(float64(r.FilesUnreadable))
		}
		if r.Outcome == results.Partial {
			addWithExemplar(m.partial.WithLabelValues(r.Policy), 1, r)
		}
		if failed {
			addWithExemplar(m.backupFailures.WithLabelValues(r.Policy, kind, reason), 1, r)
			m.consecutive.WithLabelValues(r.Policy).Inc()
		} else {
			m.consecutive.WithLabelValues(r.Policy).Set(0)
			observe(m.backupDuration.WithLabelValues(r.Policy), r.Duration().Seconds(), r)
			m.maxRSS.WithLabelValues(r.Policy).Set(float64(r.MaxRSS))
		}
		m.readBytes.WithLabelValues(r.Policy).Add(float64(r.BytesRead))
		m.writtenBytes.WithLabelValues(r.Policy).Add(float64(r.BytesWritten))
		m.files.WithLabelValues(r.Policy, "new").Add(float64(r.FilesNew))
		m.files.WithLabelValues(r.Policy, "changed").Add(float64(r.FilesChanged))
		m.files.WithLabelValues(r.Policy, "unchanged").Add(float64(r.FilesUnchanged))
		m.files.WithLabelValues(r.Policy, "skipped").Add(float64(r.FilesSkipped))
		m.files.WithLabelValues(r.Policy, "unreadable").Add(float64(r.FilesUnreadable))
		m.cpu.WithLabelValues(r.Policy).Add(r.CPUSeconds)
		m.ioRead.WithLabelValues(r.Policy).Add(float64(r.ReadIOBytes))
		m.ioWritten.WithLabelValues(r.Policy).Add(float64(r.WriteIOBytes))
	case results.Drill:
		addWithExemplar(m.restoreRuns.WithLabelValues(r.Policy, "drill"), 1, r)
		m.mismatched.WithLabelValues(r.Policy).Add(float64(r.MismatchedFiles))
		if failed {
			addWithExemplar(m.restoreFailures.WithLabelValues(r.Policy, "drill", reason), 1, r)
		}
		if r.Outcome == results.Success || reason == results.ReasonRTO {
			observe(m.restoreDuration.WithLabelValues(r.Policy, "drill"), r.Duration().Seconds(), r)
		}
		if r.WithinRTO {
			addWithExemplar(m.withinRTO.WithLabelValues(r.Policy), 1, r)
		}
		m.lastDrillAttempt.WithLabelValues(r.Policy).Set(ts(r.End))
		if r.Outcome == results.Success {
			m.lastDrill.WithLabelValues(r.Policy).Set(ts(r.End))
		}
	case results.Verify:
		addWithExemplar(m.verifyRuns.WithLabelValues(r.Repository), 1, r)
		m.blobsChecked.WithLabelValues(r.Repository).Add(float64(r.BlobsChecked))
		m.blobsCorrupt.WithLabelValues(r.Repository).Add(float64(r.BlobsCorrupt))
		if failed {
			addWithExemplar(m.verifyFailures.WithLabelValues(r.Repository), 1, r)
		} else {
			m.lastVerify.WithLabelValues(r.Repository).Set(ts(r.End))
			m.coverage.WithLabelValues(r.Repository).Set(r.Coverage)
		}
	case results.Scrub:
		m.silent.WithLabelValues(r.Policy).Add(float64(r.SilentChanges))
	}
}

// Skipped counts a skipped run.
func (m *Runs) Skipped(policy, reason string) { m.skipped.WithLabelValues(policy, reason).Inc() }

// Missed counts runs missed while the daemon was down.
func (m *Runs) Missed(policy string, n int) { m.missed.WithLabelValues(policy).Add(float64(n)) }

// RepositoryState publishes the cached repository state.
func (m *Runs) RepositoryState(s daemon.RepoState) {
	up := 0.0
	if s.Up {
		up = 1
	}
	m.repoUp.WithLabelValues(s.Name).Set(up)
	if !s.Up {
		return
	}
	m.repoSize.WithLabelValues(s.Name).Set(float64(s.SizeBytes))
	m.repoLogical.WithLabelValues(s.Name).Set(float64(s.LogicalBytes))
	m.repoFree.WithLabelValues(s.Name).Set(float64(s.FreeBytes))
	m.mu.Lock()
	defer m.mu.Unlock()
	for pol, n := range s.Snapshots {
		if _, ok := m.policies[pol]; ok || len(m.policies) == 0 {
			m.repoSnapshots.WithLabelValues(s.Name, pol).Set(float64(n))
		}
	}
	for pol, t := range s.LastBackupSuccess {
		if _, ok := m.policies[pol]; ok || len(m.policies) == 0 {
			m.lastSuccess.WithLabelValues(pol).Set(ts(t))
		}
	}
}
