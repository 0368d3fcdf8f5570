// Package cache implements repository.Cache in a local directory: copies
// of a repository's index files, snapshots and tree packs, so that a
// backup or a snapshots listing of a repository on object storage fetches
// each of them once per machine.
//
// Layout, under the repository's directory (by default
// ${XDG_CACHE_HOME:-~/.cache}/backupd/repos/<repository id>):
//
//	CACHEDIR.TAG        marks the directory as a cache for backup tools
//	<type>/<name>       one file per object (index, snapshots, data)
//	<type>/.tmp-*       a copy being written
//
// Invariants: the directories are created 0700 and the files 0600 (the
// copies are sealed, as in the repository, but their names and sizes are
// nobody else's business); a copy is written to a temp file in its type's
// directory and renamed into place, so a reader sees a whole copy or none.
// There is no fsync: a copy torn by a crash fails the repository's check
// on its next read, and is removed and fetched again.
//
// Not guaranteed: that a copy is intact. The cache does not verify what it
// returns; the repository checks every copy against its name before using
// it (repository.Cache). Nor is the cache bounded by size: it holds what
// the repository lists, and the repository removes the copies of objects
// it no longer lists (after a prune) when it next lists their type.
//
// Imports: backend, and repository for the interface it implements. Like all of the engine it never imports
// Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package cache
