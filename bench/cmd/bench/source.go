package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/meshbackup/backupd/internal/units"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zeebo/blake3"

	"github.com/meshbackup/backupd/bench/workload"
)

// stamp records a generated, never-mutated source set so later runs can
// reuse it: the options it was generated with and the digest of its
// manifest.
type stamp struct {
	Options        workload.Options `json:"options"`
	ManifestDigest string           `json:"manifest_blake3"`
	Generated      time.Time        `json:"generated"`
}

// TreeStats counts a manifest's entries.
type TreeStats struct {
	Files    int   `json:"files"`
	Dirs     int   `json:"dirs"`
	Symlinks int   `json:"symlinks"`
	Sockets  int   `json:"sockets"`
	Other    int   `json:"other"`
	Bytes    int64 `json:"bytes"`
}

func treeStats(m map[string]workload.Entry) TreeStats {
	var s TreeStats
	for _, e := range m {
		switch e.Type {
		case "file":
			s.Files++
			s.Bytes += e.Size
		case "dir":
			s.Dirs++
		case "symlink":
			s.Symlinks++
		case "socket":
			s.Sockets++
		default:
			s.Other++
		}
	}
	return s
}

// manifestDigest is a BLAKE3 digest of a whole manifest.
func manifestDigest(m map[string]workload.Entry) string {
	paths := make([]string, 0, len(m))
	for p := range m {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := blake3.New()
	for _, p := range paths {
		e := m[p]
		fmt.Fprintf(h, "%q %s %o %d %s %q\n", p, e.Type, uint32(e.Mode), e.Size, e.Hash, e.Target)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// prepareSource returns the pristine generated set under work (generating
// it unless a set with a matching stamp is there) and its manifest.
func prepareSource(work string, opt workload.Options, log *logger) (dir string, m map[string]workload.Entry, reused bool, err error) {
	dir = filepath.Join(work, "source")
	stampPath := filepath.Join(work, "source.stamp.json")
	if st, err := readStamp(stampPath); err == nil && st.Options == opt {
		log.printf("checking the cached source set %s", dir)
		m, err := workload.Manifest(dir)
		if err == nil && manifestDigest(m) == st.ManifestDigest {
			return dir, m, true, nil
		}
		log.printf("cached source set does not match its stamp: regenerating")
	}
	if err := os.Remove(stampPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", nil, false, fmt.Errorf("remove stale stamp: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, false, fmt.Errorf("remove stale source set: %w", err)
	}
	log.printf("generating the source set (%d proxies, %d Consul servers, scale %g, seed %d) in %s",
		opt.Proxies, opt.ConsulServers, opt.Scale, opt.Seed, dir)
	start := time.Now()
	if err := workload.Generate(dir, opt); err != nil {
		return "", nil, false, fmt.Errorf("generate source set: %w", err)
	}
	if m, err = workload.Manifest(dir); err != nil {
		return "", nil, false, fmt.Errorf("manifest of the source set: %w", err)
	}
	log.printf("generated in %v", time.Since(start).Round(time.Millisecond))
	b, err := json.MarshalIndent(stamp{Options: opt, ManifestDigest: manifestDigest(m), Generated: time.Now().UTC()}, "", "  ")
	if err != nil {
		return "", nil, false, fmt.Errorf("encode stamp: %w", err)
	}
	if err := os.WriteFile(stampPath, append(b, '\n'), 0o644); err != nil {
		return "", nil, false, fmt.Errorf("write stamp: %w", err)
	}
	return dir, m, false, nil
}

func readStamp(path string) (*stamp, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st := new(stamp)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// copyTree copies the tree at src to dst (which must not exist): regular
// files, directories, symlinks and sockets, with their permission bits.
// Times and owners are not copied.
func copyTree(ctx context.Context, src, dst string) error {
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		perm := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		switch t := fi.Mode().Type(); {
		case t == fs.ModeDir:
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, dirMode{to, perm})
		case t == 0:
			if err := copyFile(path, to, perm); err != nil {
				return err
			}
		case t == fs.ModeSymlink:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case t == fs.ModeSocket:
			if err := syscall.Mknod(to, syscall.S_IFSOCK|uint32(perm.Perm()), 0); err != nil {
				return &fs.PathError{Op: "mknod", Path: to, Err: err}
			}
			if err := os.Chmod(to, perm); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: cannot copy a %v", path, t)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	// Directory modes last, deepest first, so read-only ones do not get in
	// the way of their contents.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
	}
	return nil
}

// fileDigest returns the hex BLAKE3-256 digest of a file's content.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	defer f.Close()
	h := blake3.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string, perm fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return err
	}
	return out.Chmod(perm)
}

// blockSize is the granularity of the change measure: the page size of
// raft.db, the smallest in-place write of the workload.
const blockSize = 4096

type blockKey [16]byte

// fileKey identifies a version of a file by its metadata.
type fileKey struct {
	dev, ino   uint64
	size       int64
	mtim, ctim syscall.Timespec
}

// blockIndex is the content of a tree cut in fixed 4 KiB blocks at fixed
// offsets: the set of block contents (hashed) and each file's metadata.
type blockIndex struct {
	files  map[string]fileKey
	blocks map[blockKey]struct{}
}

// ChangeStats describes how a tree changed between a blockIndex and now.
type ChangeStats struct {
	// ChangedBytes counts the bytes of the files now in the tree that lie
	// in 4 KiB blocks (at fixed offsets) whose content appears nowhere in
	// the tree before: appended data, rewritten pages and rewritten files
	// count, renamed files and rotated logs do not.
	ChangedBytes int64   `json:"changed_bytes"`
	TotalBytes   int64   `json:"total_bytes"`
	Percent      float64 `json:"percent"`
	// ByKind splits ChangedBytes by kind of file (see fileKind).
	ByKind map[string]int64 `json:"changed_bytes_by_kind"`
}

// fileKind names the kind of a file of the mesh volume layout, for the
// change breakdown: its base name, with the per-instance parts of the
// layout generalised.
func fileKind(rel string) string {
	dir, base := path.Split(rel)
	switch {
	case strings.Contains(dir, "/xds/eds/"):
		return "xds/eds/*.json"
	case strings.Contains(dir, "/tap/"):
		return "tap/trace-*.json"
	case strings.Contains(dir, "/serviceaccount/"):
		return "serviceaccount/*"
	case strings.Contains(dir, "/raft/snapshots/"):
		return "raft/snapshots/*/" + base
	case strings.HasPrefix(base, "access.log."):
		return "access.log.N"
	}
	return base
}

// topKinds returns the n kinds with the most changed bytes, formatted.
func (cs ChangeStats) topKinds(n int) string {
	kinds := make([]string, 0, len(cs.ByKind))
	for k := range cs.ByKind {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		if a, b := cs.ByKind[kinds[i]], cs.ByKind[kinds[j]]; a != b {
			return a > b
		}
		return kinds[i] < kinds[j]
	})
	var parts []string
	for _, k := range kinds[:min(n, len(kinds))] {
		parts = append(parts, fmt.Sprintf("%s %s", k, units.Bytes(cs.ByKind[k])))
	}
	return strings.Join(parts, ", ")
}

// workloadStateFile is the generator's state file at the top of a set; like
// workload.Manifest, the change measure leaves it out.
const workloadStateFile = ".workload-state.json"

// walkFiles calls fn for every regular file under root (relative slash
// path, absolute path, stat) but the generator's state file.
func walkFiles(root string, fn func(rel, path string, st *syscall.Stat_t) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat_t", path)
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); rel == workloadStateFile {
			return nil
		}
		return fn(rel, path, st)
	})
}

func keyOf(st *syscall.Stat_t) fileKey {
	return fileKey{dev: st.Dev, ino: st.Ino, size: st.Size, mtim: st.Mtim, ctim: st.Ctim}
}

// indexBlocks hashes every block of every regular file under root.
func indexBlocks(root string) (*blockIndex, error) {
	bi := &blockIndex{files: make(map[string]fileKey), blocks: make(map[blockKey]struct{})}
	var paths []string
	err := walkFiles(root, func(rel, path string, st *syscall.Stat_t) error {
		bi.files[rel] = keyOf(st)
		paths = append(paths, path)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", root, err)
	}
	var mu sync.Mutex
	err = parallelFiles(paths, func(path string, buf []byte) error {
		keys, err := fileBlocks(path, buf)
		if err != nil {
			return err
		}
		mu.Lock()
		for _, k := range keys {
			bi.blocks[k] = struct{}{}
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", root, err)
	}
	return bi, nil
}

// changes measures the tree at root against bi. Files whose metadata is
// unchanged are not read.
func (bi *blockIndex) changes(root string) (ChangeStats, error) {
	cs := ChangeStats{ByKind: make(map[string]int64)}
	var paths []string
	kinds := make(map[string]string) // path -> kind
	err := walkFiles(root, func(rel, path string, st *syscall.Stat_t) error {
		cs.TotalBytes += st.Size
		if k, ok := bi.files[rel]; !ok || k != keyOf(st) {
			paths = append(paths, path)
			kinds[path] = fileKind(rel)
		}
		return nil
	})
	if err != nil {
		return cs, fmt.Errorf("measure changes in %s: %w", root, err)
	}
	var mu sync.Mutex
	err = parallelFiles(paths, func(path string, buf []byte) error {
		var changed int64
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		for {
			n, err := io.ReadFull(f, buf)
			for i := 0; i < n; i += blockSize {
				end := min(i+blockSize, n)
				if _, ok := bi.blocks[hashBlock(buf[i:end])]; !ok {
					changed += int64(end - i)
				}
			}
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				return err
			}
		}
		mu.Lock()
		cs.ChangedBytes += changed
		if changed > 0 {
			cs.ByKind[kinds[path]] += changed
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return cs, fmt.Errorf("measure changes in %s: %w", root, err)
	}
	if cs.TotalBytes > 0 {
		cs.Percent = 100 * float64(cs.ChangedBytes) / float64(cs.TotalBytes)
	}
	return cs, nil
}

// readBuf is the read size of the block hashing (a multiple of blockSize).
const readBuf = 256 * blockSize

func fileBlocks(path string, buf []byte) ([]blockKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var keys []blockKey
	for {
		n, err := io.ReadFull(f, buf)
		for i := 0; i < n; i += blockSize {
			keys = append(keys, hashBlock(buf[i:min(i+blockSize, n)]))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return keys, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func hashBlock(b []byte) blockKey {
	sum := blake3.Sum256(b)
	var k blockKey
	copy(k[:], sum[:])
	return k
}

// parallelFiles calls fn for each path on GOMAXPROCS goroutines, each with
// its own read buffer, and returns the first error.
func parallelFiles(paths []string, fn func(path string, buf []byte) error) error {
	ch := make(chan string)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), max(1, len(paths))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, readBuf)
			for p := range ch {
				if err := fn(p, buf); err != nil {
					select {
					case errs <- fmt.Errorf("%s: %w", p, err):
					default:
					}
				}
			}
		}()
	}
	for _, p := range paths {
		ch <- p
	}
	close(ch)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// FileChanges compares two manifests file by file.
type FileChanges struct {
	New     int `json:"new"`
	Changed int `json:"changed"`
	Removed int `json:"removed"`
	// Bytes is the total size of the new and changed files.
	Bytes int64 `json:"bytes"`
}

func fileChanges(before, after map[string]workload.Entry) FileChanges {
	var fc FileChanges
	for p, a := range after {
		if a.Type != "file" {
			continue
		}
		b, ok := before[p]
		switch {
		case !ok || b.Type != "file":
			fc.New++
			fc.Bytes += a.Size
		case b.Hash != a.Hash:
			fc.Changed++
			fc.Bytes += a.Size
		}
	}
	for p, b := range before {
		if a, ok := after[p]; b.Type == "file" && (!ok || a.Type != "file") {
			fc.Removed++
		}
	}
	return fc
}
