package collectorstest

import (
	"regexp"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshbackup/backupd/collectors"
)

// recorder is a Registerer that keeps what is registered with it.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Every metric the run and storage collectors describe is among the names,
// so a rule or panel is never checked against a series that only appears
// once the daemon has run something.
func TestMetricNamesHasEveryDescribedMetric(t *testing.T) {
	var rec recorder
	if err := collectors.NewRuns().Register(&rec); err != nil {
		t.Fatal(err)
	}
	if err := collectors.NewStorage().Register(&rec); err != nil {
		t.Fatal(err)
	}
	if _, err := collectors.NewVolumes(&rec); err != nil {
		t.Fatal(err)
	}
	known := MetricNames(t)
	n := 0
	for _, c := range rec.cs {
		descs := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(descs); close(descs) }()
		for d := range descs {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			n++
			if !known[m[1]] {
				t.Errorf("%s is described but not among MetricNames", m[1])
			}
		}
	}
	if n < 40 {
		t.Fatalf("only %d metrics described", n)
	}
	for _, name := range []string{"backupd_build_info", "process_start_time_seconds", "go_goroutines", "up"} {
		if !known[name] {
			t.Errorf("%s is not among MetricNames", name)
		}
	}
}
