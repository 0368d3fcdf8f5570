// Package collectorstest gives tests the names of every metric the exporter
// serves, read from a live registry built by collectors.NewRegistry, the
// daemon's own.
//
// Imports: collectors, config and the Prometheus client; only tests (of
// alerts/ and dashboards/ too) import it.
package collectorstest

import (
	"testing"
	"time"

	promversion "github.com/prometheus/common/version"

	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/results"
	"github.com/meshbackup/backupd/collectors"
)

// onePolicy is the config the registry is fed: one repository, one policy
// with every schedule set.
const onePolicy = `repositories: [{name: r, path: /tmp/r, password_env: X}]
policies:
  - {name: p, source: /tmp/s, repository: r, schedule: "@every 1m", rpo: 1h, rto: 1h, drill: {schedule: "@hourly"}, verify: {schedule: "@daily"}}
`

// MetricNames returns every series name the exporter serves for a one-policy
// config (histogram _bucket/_sum/_count included), plus "up".
func MetricNames(t testing.TB) map[string]bool {
	t.Helper()
	known := map[string]bool{"up": true}
	for name := range MetricLabels(t) {
		known[name] = true
	}
	return known
}

// MetricLabels returns the label names of every series name the exporter
// serves for a one-policy config (histogram _bucket/_sum/_count included;
// le is not listed), without the target labels Prometheus adds (job,
// instance); the node agent's metrics (collectors.Volumes) are among them,
// the policy one of its volumes.
func MetricLabels(t testing.TB) map[string]map[string]bool {
	t.Helper()
	// The version the build info shows is left as it is.
	reg, runs, storage, err := collectors.NewRegistry(promversion.Version)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("test.yaml", []byte(onePolicy))
	if err != nil {
		t.Fatal(err)
	}
	runs.Configured(cfg)
	_ = storage.Wrap("r", nil)
	vols, err := collectors.NewVolumes(reg)
	if err != nil {
		t.Fatal(err)
	}
	vols.SetVolumes([][6]string{{"p", "ns", "claim", "pod-0", "data", "node-a"}})
	vols.SetLeader(true)
	feed(runs, time.Now())
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	for _, f := range fams {
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		for _, sfx := range []string{"", "_bucket", "_count", "_sum"} {
			out[f.GetName()+sfx] = labels
		}
	}
	return out
}

// feed tells runs what a daemon running the one policy would: the
// repository's state and a run of every kind, successful or not.
func feed(runs *collectors.Runs, now time.Time) {
	runs.RepositoryState(daemon.RepoState{Name: "r", Up: true, SizeBytes: 1, LogicalBytes: 1, FreeBytes: 1, HasFreeBytes: true,
		Snapshots: map[string]int{"p": 1}, LastBackupSuccess: map[string]time.Time{"p": now}})
	runs.Missed("p", 1)
	runs.Skipped("p", "overlap")
	for _, kind := range []results.Kind{results.Backup, results.Drill, results.Verify, results.Scrub} {
		for _, outcome := range []results.Outcome{results.Success, results.Failure} {
			r := results.Record{RunID: "run", Kind: kind, Policy: "p", Repository: "r", Trigger: "scheduled",
				Start: now.Add(-time.Minute), End: now, Outcome: outcome, WithinRTO: outcome == results.Success}
			runs.RunStarted(r)
			runs.RunFinished(r)
		}
	}
}
