// Package enginetest holds the end-to-end tests of the backup engine:
// round trips on generated mesh volumes, incremental backups after realistic
// mutations, and the fault scenarios of docs/DESIGN.md §8, each checked against an
// oracle (a manifest of path -> hash taken when the snapshot was made).
//
// It holds tests only: they may import any engine package, the test helpers
// and bench/workload; nothing imports it. Like all of the engine it never
// imports Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package enginetest
