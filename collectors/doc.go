// Package collectors turns what the daemon records into Prometheus metrics
// (docs/DESIGN.md §4, prefix backupd_). Runs implements the daemon's Observer: it is
// told about runs as they start and finish and about the cached repository
// state, and only ever reads those records: a scrape never touches a
// repository. Scrapes read a cache of encoded series that every change
// writes (cache.go), not the vectors. Storage wraps a backend to measure its
// operations.
//
// Every known series is created at 0 when a policy is configured, and the
// series of a removed policy are deleted, so rules see a policy appear and
// disappear cleanly.
//
// Imports: the Prometheus client and, of the engine, only the types it is
// handed (backend, config, daemon, results). It must not import exporter/,
// alerts/ or dashboards/, and no engine package may import it
// (docs/DESIGN.md §2.3).
package collectors
