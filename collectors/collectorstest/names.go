// Package collectorstest gives tests the names of every metric the exporter
// serves, read from a live registry built like the daemon's.
//
// Imports: collectors, config and the Prometheus client; only tests (of
// alerts/ and dashboards/ too) import it.
package collectorstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/meshbackup/backupd/backupd/config"
	"github.com/meshbackup/backupd/collectors"
)

// MetricNames returns every series name the exporter serves for a one-policy
// config (histogram _bucket/_sum/_count included), plus "up".
func MetricNames(t testing.TB) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	runs, storage := collectors.NewRuns(), collectors.NewStorage()
	if err := runs.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := storage.Register(reg); err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(promcollectors.NewProcessCollector(promcollectors.ProcessCollectorOpts{}),
		promcollectors.NewGoCollector(), versioncollector.NewCollector("backupd"))
	cfg, err := config.Parse("test.yaml", []byte(`repositories: [{name: r, path: /tmp/r, password_env: X}]
policies:
  - {name: p, source: /tmp/s, repository: r, schedule: "@every 1m", rpo: 1h, rto: 1h, drill: {schedule: "@hourly"}, verify: {schedule: "@daily"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	runs.Configured(cfg)
	_ = storage.Wrap("r", nil)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"up": true}
	for _, f := range fams {
		known[f.GetName()] = true
		for _, sfx := range []string{"_bucket", "_count", "_sum"} {
			known[f.GetName()+sfx] = true
		}
	}
	return known
}
