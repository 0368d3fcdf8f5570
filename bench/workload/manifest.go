package workload

import (
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/zeebo/blake3"
)

// Entry describes one filesystem entry in a Manifest.
type Entry struct {
	// Type is "file", "dir", "symlink", "socket" or "other" (fifo, device).
	Type string
	// Mode is the full mode from lstat (type bits and permissions).
	Mode fs.FileMode
	// Size is the content length for files and 0 for every other type.
	Size int64
	// Hash is the hex BLAKE3-256 (unkeyed) digest of a file's content, ""
	// for other types.
	Hash string
	// Target is a symlink's target as stored (not resolved), "" otherwise.
	Target string
}

// Manifest is the test oracle for a tree: it returns every entry under root
// (root itself excluded) except the top-level .workload-state.json, keyed by
// its slash-separated path relative to root. Symlinks are not followed.
// Files are hashed with up to GOMAXPROCS goroutines.
func Manifest(root string) (map[string]Entry, error) {
	m := make(map[string]Entry)
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if rel == stateFileName {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := Entry{Mode: fi.Mode()}
		switch t := fi.Mode().Type(); {
		case t == 0:
			e.Type = "file"
			e.Size = fi.Size()
			files = append(files, rel)
		case t&fs.ModeDir != 0:
			e.Type = "dir"
		case t&fs.ModeSymlink != 0:
			e.Type = "symlink"
			if e.Target, err = os.Readlink(path); err != nil {
				return err
			}
		case t&fs.ModeSocket != 0:
			e.Type = "socket"
		default:
			e.Type = "other"
		}
		m[rel] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	hashes := make([]string, len(files))
	err = parallel(len(files), func(i int) error {
		h, err := hashFile(filepath.Join(root, filepath.FromSlash(files[i])))
		hashes[i] = h
		return err
	})
	if err != nil {
		return nil, err
	}
	for i, rel := range files {
		e := m[rel]
		e.Hash = hashes[i]
		m[rel] = e
	}
	return m, nil
}

var hashBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := blake3.New()
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	if _, err := io.CopyBuffer(h, f, *bp); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Diff returns human-readable differences between two manifests, one line
// per difference sorted by path, or nil if they are equal. When
// ignoreSockets is true, paths that are sockets in either manifest are
// skipped.
func Diff(want, got map[string]Entry, ignoreSockets bool) []string {
	paths := make(map[string]bool, len(want))
	for p := range want {
		paths[p] = true
	}
	for p := range got {
		paths[p] = true
	}
	keys := make([]string, 0, len(paths))
	for p := range paths {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	var out []string
	for _, p := range keys {
		w, inW := want[p]
		g, inG := got[p]
		if ignoreSockets && (w.Type == "socket" || g.Type == "socket") {
			continue
		}
		switch {
		case !inG:
			out = append(out, fmt.Sprintf("%s: missing (want %s)", p, w.Type))
			continue
		case !inW:
			out = append(out, fmt.Sprintf("%s: unexpected %s", p, g.Type))
			continue
		case w.Type != g.Type:
			out = append(out, fmt.Sprintf("%s: type %s, want %s", p, g.Type, w.Type))
			continue
		}
		if w.Mode != g.Mode {
			out = append(out, fmt.Sprintf("%s: mode %v, want %v", p, g.Mode, w.Mode))
		}
		if w.Size != g.Size {
			out = append(out, fmt.Sprintf("%s: size %d, want %d", p, g.Size, w.Size))
		}
		if w.Hash != g.Hash {
			out = append(out, fmt.Sprintf("%s: content hash %.16s…, want %.16s…", p, g.Hash, w.Hash))
		}
		if w.Target != g.Target {
			out = append(out, fmt.Sprintf("%s: symlink target %q, want %q", p, g.Target, w.Target))
		}
	}
	return out
}
