package workload

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// SmallFilesOptions selects a "node's worth of small files": the volumes
// of the pods of one Kubernetes node, many small files in many pod
// directories. The zero value of each field selects its default.
//
// Layout under root:
//
//	pods/<pod-uid>/{config,data,logs,cache}/<name>
//
// Each file is 0.5–16 KiB (log-uniform, so most are small), with content
// of one of several kinds: text logs, JSON documents, YAML configuration
// from a template shared by all pods (similar, rarely identical), binary
// records with a repeated header and random payload, random (already
// compressed or encrypted) blobs, and a few files identical in every pod
// (a CA bundle). So neither deduplication nor compression is trivial.
type SmallFilesOptions struct {
	// Files is the number of files (default 100,000).
	Files int
	// Dirs is the number of pod directories (default 1,000).
	Dirs int
	// Seed selects the pseudo-random content; equal options give equal
	// trees.
	Seed uint64
}

const (
	defaultSmallFiles = 100_000
	defaultSmallDirs  = 1_000
	smallMin          = 512
	smallMax          = 16 << 10
)

// Random stream tags of the small-files generator (after those of rng.go).
const (
	tagSmall uint64 = 1000 + iota
	tagSmallMut
	tagSmallPick
)

func (o SmallFilesOptions) normalize() (SmallFilesOptions, error) {
	switch {
	case o.Files < 0:
		return o, fmt.Errorf("workload: negative Files %d", o.Files)
	case o.Dirs < 0:
		return o, fmt.Errorf("workload: negative Dirs %d", o.Dirs)
	}
	if o.Files == 0 {
		o.Files = defaultSmallFiles
	}
	if o.Dirs == 0 {
		o.Dirs = defaultSmallDirs
	}
	o.Dirs = min(o.Dirs, o.Files)
	return o, nil
}

var smallSubdirs = []string{"config", "data", "logs", "cache"}

// smallFileKind is the kind of content of a small file.
type smallFileKind int

const (
	smallLog smallFileKind = iota
	smallJSON
	smallYAML
	smallRecords
	smallRandom
	smallShared
)

// smallPath returns the path (relative, slash-separated) and kind of file
// i of pod d.
func smallPath(opt SmallFilesOptions, d, i int) (string, smallFileKind) {
	r := newRand(opt.Seed, tagSmall, uint64(d), uint64(i), 1)
	uid := podUID(opt.Seed, d)
	var kind smallFileKind
	switch x := r.IntN(100); {
	case i == 0:
		kind = smallShared
	case x < 30:
		kind = smallLog
	case x < 55:
		kind = smallJSON
	case x < 75:
		kind = smallYAML
	case x < 90:
		kind = smallRecords
	default:
		kind = smallRandom
	}
	var sub, name string
	switch kind {
	case smallShared:
		sub, name = "config", "ca-bundle.crt"
	case smallLog:
		sub, name = "logs", fmt.Sprintf("%s-%d.log", pick(r, serviceNames), i)
	case smallJSON:
		sub, name = "data", fmt.Sprintf("obj-%06d.json", i)
	case smallYAML:
		sub, name = "config", fmt.Sprintf("%s-%d.yaml", pick(r, serviceNames), i)
	case smallRecords:
		sub, name = "data", fmt.Sprintf("seg-%06d.dat", i)
	default:
		sub, name = "cache", fmt.Sprintf("blob-%06d.bin", i)
	}
	return "pods/" + uid + "/" + sub + "/" + name, kind
}

func podUID(seed uint64, d int) string { return uuidString(newRand(seed, tagSmall, uint64(d), 0)) }

// smallSize draws a size in [smallMin, smallMax], log-uniform.
func smallSize(r *rand.Rand) int {
	lo, hi := math.Log(smallMin), math.Log(smallMax)
	return int(math.Exp(lo + (hi-lo)*r.Float64()))
}

// smallContent returns the content of a file of the given kind, drawn
// from r, for pod d.
func smallContent(opt SmallFilesOptions, kind smallFileKind, d int, r *rand.Rand) []byte {
	if kind == smallShared {
		// The same in every pod: deduplicates across pods.
		return sharedBundle(opt.Seed)
	}
	size := smallSize(r)
	b := make([]byte, 0, size+256)
	switch kind {
	case smallLog:
		for len(b) < size {
			b = appendLogLine(b, r)
		}
	case smallJSON:
		b = append(b, '{')
		for n := 0; len(b) < size; n++ {
			if n > 0 {
				b = append(b, ',')
			}
			b = append(b, "\n  \""...)
			b = append(b, pick(r, jsonKeys)...)
			b = append(b, '_')
			b = strconv.AppendInt(b, int64(n), 10)
			b = append(b, "\": "...)
			switch r.IntN(4) {
			case 0:
				b = strconv.AppendInt(b, r.Int64N(1e9), 10)
			case 1:
				b = append(b, '"')
				b = appendUUID(b, r)
				b = append(b, '"')
			case 2:
				b = strconv.AppendFloat(b, r.Float64()*1000, 'f', 3, 64)
			default:
				b = append(b, '"')
				b = append(b, pick(r, serviceNames)...)
				b = append(b, '.')
				b = append(b, pick(r, namespaces)...)
				b = append(b, ".svc\""...)
			}
		}
		b = append(b, "\n}\n"...)
	case smallYAML:
		// A template shared by every pod, with the pod's own values.
		tr := newRand(opt.Seed, tagSmall, 7) // the template's stream
		for n := 0; len(b) < size; n++ {
			key := pick(tr, jsonKeys)
			b = append(b, key...)
			b = append(b, ":\n  name: "...)
			b = append(b, pick(tr, serviceNames)...)
			b = append(b, "\n  replicas: "...)
			b = strconv.AppendInt(b, int64(1+tr.IntN(5)), 10)
			b = append(b, "\n  pod: "...)
			b = append(b, podUID(opt.Seed, d)...)
			if r.IntN(3) == 0 {
				b = append(b, "\n  revision: "...)
				b = strconv.AppendInt(b, r.Int64N(1e6), 10)
			}
			b = append(b, "\n  endpoint: "...)
			b = appendIP(b, tr, 10)
			b = append(b, '\n')
		}
	case smallRecords:
		// Fixed 16-byte headers, a counter, random payloads.
		var rec [64]byte
		copy(rec[:], "\x89REC\x00\x01\x00\x00segment-v2\x00\x00")
		for n := uint64(0); len(b) < size; n++ {
			binary.LittleEndian.PutUint64(rec[16:], n)
			fillRandom(rec[24:24+8*(1+r.IntN(5))], r)
			b = append(b, rec[:]...)
		}
	default:
		b = b[:size]
		fillRandom(b, r)
	}
	return b[:min(len(b), size)]
}

var jsonKeys = []string{"id", "name", "owner", "created", "updated", "status", "revision", "labels", "selector", "weight", "timeout", "retries", "region", "zone", "cluster"}

var logLevels = []string{"INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"}

func appendLogLine(b []byte, r *rand.Rand) []byte {
	b = append(b, "2026-11-22T"...)
	b = append(b, fmt.Sprintf("%02d:%02d:%02d.%03dZ ", 10+r.IntN(4), r.IntN(60), r.IntN(60), r.IntN(1000))...)
	b = append(b, pick(r, logLevels)...)
	b = append(b, " ["...)
	b = append(b, pick(r, serviceNames)...)
	b = append(b, "] request id="...)
	b = appendHex(b, r, 16)
	b = append(b, " path=/api/v1/"...)
	b = append(b, pick(r, jsonKeys)...)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64([]int{200, 200, 200, 201, 204, 404, 500, 503}[r.IntN(8)]), 10)
	b = append(b, " dur="...)
	b = strconv.AppendInt(b, int64(r.IntN(900)), 10)
	return append(b, "ms\n"...)
}

func sharedBundle(seed uint64) []byte {
	r := newRand(seed, tagSmall, 9)
	b := []byte{}
	for range 3 {
		b = append(b, "-----BEGIN CERTIFICATE-----\n"...)
		raw := make([]byte, 900)
		fillRandom(raw, r)
		b = appendBase64Lines(b, raw)
		b = append(b, "-----END CERTIFICATE-----\n"...)
	}
	return b
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func appendBase64Lines(b, raw []byte) []byte {
	n := 0
	for i := 0; i+3 <= len(raw); i += 3 {
		v := uint(raw[i])<<16 | uint(raw[i+1])<<8 | uint(raw[i+2])
		b = append(b, b64[v>>18&63], b64[v>>12&63], b64[v>>6&63], b64[v&63])
		if n += 4; n == 64 {
			b = append(b, '\n')
			n = 0
		}
	}
	if n > 0 {
		b = append(b, '\n')
	}
	return b
}

// GenerateSmallFiles creates a small-files set under root (empty or
// absent). Equal options give equal Manifests. Generation uses up to
// GOMAXPROCS goroutines.
func GenerateSmallFiles(root string, opt SmallFilesOptions) error {
	opt, err := opt.normalize()
	if err != nil {
		return err
	}
	if err := checkEmpty(root); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "pods"), 0o755); err != nil {
		return err
	}
	return parallel(opt.Dirs, func(d int) error {
		// Files are dealt to the pods in turn: pod d gets files d, d+Dirs, ...
		n := opt.Files / opt.Dirs
		if d < opt.Files%opt.Dirs {
			n++
		}
		made := map[string]bool{}
		for i := range n {
			rel, kind := smallPath(opt, d, i)
			dir := filepath.Join(root, filepath.FromSlash(filepath.ToSlash(filepath.Dir(rel))))
			if !made[dir] {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return err
				}
				made[dir] = true
			}
			r := newRand(opt.Seed, tagSmall, uint64(d), uint64(i), 2)
			if err := writeFile(filepath.Join(root, filepath.FromSlash(rel)), smallContent(opt, kind, d, r), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

// SmallChange says what MutateSmallFiles did.
type SmallChange struct {
	Rewritten, Appended, Removed, Added int
	// Bytes is the size of the content written (rewritten files, appended
	// bytes, new files).
	Bytes int64
}

// MutateSmallFiles changes about percent of the files of a small-files set
// under root, as the pods of a node would between two backups: most
// chosen files rewritten in place with new content (a new size from the
// same distribution), logs appended to, a few files removed and as many
// new ones added. The choice is a pure function of the options, step and
// the tree's current file names, so equal trees mutated with equal
// arguments stay equal.
func MutateSmallFiles(root string, opt SmallFilesOptions, step int, percent float64) (SmallChange, error) {
	var ch SmallChange
	opt, err := opt.normalize()
	if err != nil {
		return ch, err
	}
	var files []string
	err = filepath.WalkDir(filepath.Join(root, "pods"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return ch, fmt.Errorf("workload: list %s: %w", root, err)
	}
	sort.Strings(files)
	threshold := uint64(percent / 100 * float64(math.MaxUint64))
	for _, rel := range files {
		h := seedOf(opt.Seed, tagSmallPick, uint64(step), strHash(rel))
		if h >= threshold || strings.HasSuffix(rel, "/ca-bundle.crt") {
			continue
		}
		path := filepath.Join(root, filepath.FromSlash(rel))
		r := newRand(opt.Seed, tagSmallMut, uint64(step), strHash(rel))
		switch x := r.IntN(100); {
		case x < 5:
			if err := os.Remove(path); err != nil {
				return ch, err
			}
			ch.Removed++
		case x < 10:
			// A new file beside it, of the same kind.
			ext := filepath.Ext(rel)
			nrel := strings.TrimSuffix(rel, ext) + ".s" + strconv.Itoa(step) + ext
			b := smallContent(opt, kindOf(rel), 0, r)
			if err := writeFile(filepath.Join(root, filepath.FromSlash(nrel)), b, 0o644); err != nil {
				return ch, err
			}
			ch.Added++
			ch.Bytes += int64(len(b))
		case x < 35 && strings.HasSuffix(rel, ".log"):
			var b []byte
			for n := 1 + r.IntN(8); n > 0; n-- {
				b = appendLogLine(b, r)
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return ch, err
			}
			_, err = f.Write(b)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return ch, err
			}
			ch.Appended++
			ch.Bytes += int64(len(b))
		default:
			b := smallContent(opt, kindOf(rel), 0, r)
			if err := writeFile(path, b, 0o644); err != nil {
				return ch, err
			}
			ch.Rewritten++
			ch.Bytes += int64(len(b))
		}
	}
	return ch, nil
}

// kindOf tells a small file's kind by its name.
func kindOf(rel string) smallFileKind {
	switch {
	case strings.HasSuffix(rel, ".log"):
		return smallLog
	case strings.HasSuffix(rel, ".json"):
		return smallJSON
	case strings.HasSuffix(rel, ".yaml"):
		return smallYAML
	case strings.HasSuffix(rel, ".dat"):
		return smallRecords
	}
	return smallRandom
}

// strHash is FNV-1a of s.
func strHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
