// Package repository implements the repository format of docs/FORMAT.md:
// keys and config, blob sealing, packs and their trailers, delta index files,
// the in-memory index, unpacked objects (SaveUnpacked, LoadUnpacked: one
// sealed object per file, keyed by backend.FileType) and lock leases.
//
// Glossary: a blob is a chunk or a tree, named by the keyed BLAKE3 of its
// plaintext; a pack holds sealed blobs and a trailer listing them; an index
// file lists packs and blob locations; a snapshot names a root tree.
//
// Invariants: packs are stored before the index files that list them, and
// index files before the snapshots that need them (Flush, then SaveUnpacked
// of the snapshot); every blob handed out by LoadBlob was authenticated and
// re-hashed against its id.
//
// Not guaranteed: the in-memory index holds every blob of the repository
// (about 80 bytes each), so memory grows with the repository's blob count;
// a blob stored twice by concurrent writers is kept twice until prune.
//
// Imports: backend, crypto, chunker and faultpoint; never snapshot or the
// packages above it (archiver, restorer, checker, prune, results, daemon).
// Like all of the engine it never imports Prometheus, collectors/ or
// exporter/ (docs/DESIGN.md §2.3).
package repository
