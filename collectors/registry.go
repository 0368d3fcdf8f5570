package collectors

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	dto "github.com/prometheus/client_model/go"
	promversion "github.com/prometheus/common/version"
)

// Registry is the registry the exporter serves. It is a prometheus.Registry
// (the storage, process, Go and build metrics, and whatever else is
// registered with it, such as promhttp's) whose Gather adds the run metrics
// from their cache (Runs.Gather): a scrape of 1,000 policies does not go
// through the registry's per-series checks (docs/DESIGN.md §4, "Scrape
// cost").
type Registry struct {
	*prometheus.Registry
	runs *Runs
}

// Gather merges the registry's families with the run metrics, sorted by
// name. A family gathered from both (a collector registered under a run
// metric's name) is an error; the registry's copy is dropped.
func (r *Registry) Gather() ([]*dto.MetricFamily, error) {
	other, err := r.Registry.Gather()
	runs, _ := r.runs.Gather()
	out := make([]*dto.MetricFamily, 0, len(other)+len(runs))
	i, j := 0, 0
	for i < len(runs) || j < len(other) {
		switch {
		case j == len(other) || i < len(runs) && runs[i].GetName() < other[j].GetName():
			out = append(out, runs[i])
			i++
		case i == len(runs) || other[j].GetName() < runs[i].GetName():
			out = append(out, other[j])
			j++
		default:
			err = errors.Join(err, fmt.Errorf("metric family %s gathered twice, from the run metrics and the registry", other[j].GetName()))
			j++
		}
	}
	return out, err
}

// NewRegistry builds the registry the exporter serves: the run and storage
// metrics, the process and Go collectors, and backupd_build_info of
// version. No default registry is used. The build info is read from
// github.com/prometheus/common/version, whose Version it sets.
func NewRegistry(version string) (*Registry, *Runs, *Storage, error) {
	reg := prometheus.NewRegistry()
	runs, storage := NewRuns(), NewStorage()
	// The run metrics' names are held by the registry too, so that nothing
	// registered later can take one.
	if err := reg.Register(describeOnly{runs}); err != nil {
		return nil, nil, nil, fmt.Errorf("register run metrics: %w", err)
	}
	if err := storage.Register(reg); err != nil {
		return nil, nil, nil, fmt.Errorf("register storage metrics: %w", err)
	}
	promversion.Version = version
	for _, c := range []prometheus.Collector{
		promcollectors.NewProcessCollector(promcollectors.ProcessCollectorOpts{}),
		promcollectors.NewGoCollector(),
		versioncollector.NewCollector("backupd"),
	} {
		if err := reg.Register(c); err != nil {
			return nil, nil, nil, fmt.Errorf("register process, Go and build metrics: %w", err)
		}
	}
	return &Registry{Registry: reg, runs: runs}, runs, storage, nil
}

// describeOnly registers the run metrics' descriptors and collects
// nothing: the registry's Gather leaves them to Registry.Gather.
type describeOnly struct{ runs *Runs }

func (d describeOnly) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range d.runs.all {
		v.c.Describe(ch)
	}
}

func (describeOnly) Collect(chan<- prometheus.Metric) {}
