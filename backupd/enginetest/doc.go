// Package enginetest holds the end-to-end tests of the backup engine:
// round trips on generated mesh volumes, incremental backups after realistic
// mutations, and the fault scenarios of docs/DESIGN.md §8, each checked against an
// oracle (a manifest of path -> hash taken when the snapshot was made).
package enginetest
