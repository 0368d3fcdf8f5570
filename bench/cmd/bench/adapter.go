package main

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// adapter is everything the benchmarks do with one tool, as command lines
// and parsers of what the tool prints; the runners (measure, runProc) run
// them. Each tool's adapter is in adapter_<tool>.go and works in its own
// home directory (repository, caches, configuration) with the tool's
// recommended settings (settings says which).
//
// The healthy-machine bench uses the driver part; the fault benchmark
// (-faults) the rest too.
type adapter interface {
	driver
	// settings describes the options the bench uses with the tool.
	settings() string
	// snapshotID returns the ID of the snapshot a successful backup made,
	// from what it printed; seq is the number its backupCmd was made with.
	snapshotID(p *procResult, seq int) (string, error)
	// restoreIDCmd restores snapshot id (as snapshotID or listSnapshots
	// returned it) of src into target, which exists.
	restoreIDCmd(id, src, target string) invocation
	// checkCmd checks the repository's structure; with readData it also
	// reads back and verifies all data.
	checkCmd(readData bool) invocation
	// checkSubsetCmd is the tool's partial read-back verification (a
	// share of the data per run); ok is false when it has none.
	checkSubsetCmd() (inv invocation, ok bool)
	// pruneCmds removes every snapshot but the newest keepLast (none when
	// keepLast is 0) and then frees the space no snapshot needs, at once
	// (no grace period).
	pruneCmds(keepLast int) []invocation
	// unlockCmd removes the locks a dead process left; ok is false when
	// the tool has no locks to remove.
	unlockCmd() (inv invocation, ok bool)
	// lockError reports whether a failed run's output says the run was
	// refused because of a lock.
	lockError(output string) bool
	listCmd() invocation
	// listSnapshots returns the IDs of the snapshots listCmd printed.
	listSnapshots(stdout string) ([]string, error)
	// repoFiles lists the repository's files of each kind the corruption
	// scenario damages, as paths relative to repoDir; a kind the tool does
	// not keep in files of its own is absent.
	repoFiles() (map[repoFileKind][]string, error)
}

// repoFileKind is a kind of file in a repository.
type repoFileKind string

const (
	fileDataPack repoFileKind = "data pack"
	fileIndex    repoFileKind = "index"
	fileSnapshot repoFileKind = "snapshot"
)

// newAdapter is newDriver for the fault benchmark (local repositories).
func newAdapter(name, bin, home string) (adapter, error) { return newDriver(name, bin, home, nil) }

// repoBytes is the repository's size: the sum of its files' sizes.
func repoBytes(_ context.Context, a adapter) (int64, error) { return dirSize(a.repoDir()) }

// listRepoFiles returns the regular files under repoDir/sub (relative to
// repoDir, sorted) whose base name matches re, with their sizes.
func listRepoFiles(repoDir, sub string, re *regexp.Regexp) ([]string, map[string]int64, error) {
	var out []string
	sizes := map[string]int64{}
	root := filepath.Join(repoDir, sub)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !re.MatchString(d.Name()) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoDir, path)
		if err != nil {
			return err
		}
		out = append(out, rel)
		sizes[rel] = fi.Size()
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return nil, nil, fmt.Errorf("list %s: %w", root, err)
	}
	sort.Strings(out)
	return out, sizes, nil
}

// largerHalf returns the larger half of files by size (at least one): in
// repositories that keep data and metadata in packs of one kind, the
// biggest packs are the data packs.
func largerHalf(files []string, sizes map[string]int64) []string {
	s := append([]string(nil), files...)
	sort.SliceStable(s, func(i, j int) bool { return sizes[s[i]] > sizes[s[j]] })
	s = s[:max(1, (len(s)+1)/2)]
	if len(files) == 0 {
		return nil
	}
	sort.Strings(s)
	return s
}

// hexID matches a hex object ID of at least 8 digits.
var hexID = regexp.MustCompile(`^[0-9a-f]{8,}$`)

// containsAny reports whether s contains any of the substrings (case
// insensitive).
func containsAny(s string, subs ...string) bool {
	l := strings.ToLower(s)
	for _, sub := range subs {
		if strings.Contains(l, strings.ToLower(sub)) {
			return true
		}
	}
	return false
}
