package collectors

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	promcollectors "github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	promversion "github.com/prometheus/common/version"
)

// NewRegistry builds the registry the exporter serves: the run and storage
// metrics, the process and Go collectors, and backupd_build_info of
// version. No default registry is used. The build info is read from
// github.com/prometheus/common/version, whose Version it sets.
func NewRegistry(version string) (*prometheus.Registry, *Runs, *Storage, error) {
	reg := prometheus.NewRegistry()
	runs, storage := NewRuns(), NewStorage()
	if err := runs.Register(reg); err != nil {
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
	return reg, runs, storage, nil
}
