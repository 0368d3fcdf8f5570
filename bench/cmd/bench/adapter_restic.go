package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// restic: repository format 2 (restic 0.14's default), RESTIC_PASSWORD,
// RESTIC_REPOSITORY and RESTIC_CACHE_DIR in the tool's home, its defaults
// otherwise (compression auto).
type resticDriver struct{ toolBase }

func (d *resticDriver) name() string           { return "restic" }
func (d *resticDriver) versionCmd() invocation { return d.cmd("version") }
func (d *resticDriver) initCmd() invocation    { return d.cmd("init") }
func (d *resticDriver) backupCmd(src string, _ int) invocation {
	return d.cmd("backup", "--json", "--quiet", src)
}
func (d *resticDriver) restoreCmd(_, target string, _ int) invocation {
	return d.cmd("restore", "latest", "--target", target)
}
func (d *resticDriver) restoredRoot(target, src string) string { return underTarget(target, src) }

func (d *resticDriver) settings() string {
	return "backup --json (defaults: repository format 2, compression auto, cache in RESTIC_CACHE_DIR); RESTIC_PASSWORD; prune with its default --max-unused 5%"
}

func (d *resticDriver) snapshotID(p *procResult, _ int) (string, error) {
	// One JSON message per line; the summary carries the snapshot ID.
	for _, line := range strings.Split(p.Stdout, "\n") {
		var m struct {
			Type       string `json:"message_type"`
			SnapshotID string `json:"snapshot_id"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Type == "summary" && m.SnapshotID != "" {
			return m.SnapshotID, nil
		}
	}
	return "", fmt.Errorf("restic printed no summary with a snapshot_id: %.200s", lastLines(p.Stdout, 2))
}

func (d *resticDriver) restoreIDCmd(id, _, target string) invocation {
	return d.cmd("restore", id, "--target", target)
}

func (d *resticDriver) checkCmd(readData bool) invocation {
	if readData {
		return d.cmd("check", "--read-data")
	}
	return d.cmd("check")
}

func (d *resticDriver) checkSubsetCmd() (invocation, bool) {
	return d.cmd("check", "--read-data-subset", "1/"+strconv.Itoa(subsetShare)), true
}

func (d *resticDriver) pruneCmds(keepLast int) []invocation {
	if keepLast > 0 {
		return []invocation{d.cmd("forget", "--keep-last", strconv.Itoa(keepLast), "--prune")}
	}
	return []invocation{d.cmd("prune")}
}

func (d *resticDriver) unlockCmd() (invocation, bool) { return d.cmd("unlock"), true }

func (d *resticDriver) lockError(out string) bool {
	return containsAny(out, "repository is already locked", "unable to create lock")
}

func (d *resticDriver) listCmd() invocation { return d.cmd("snapshots", "--json") }

func (d *resticDriver) listSnapshots(stdout string) ([]string, error) {
	return jsonIDs(stdout, "restic snapshots")
}

func (d *resticDriver) repoFiles() (map[repoFileKind][]string, error) {
	packs, sizes, err := listRepoFiles(d.repo, "data", hexID)
	if err != nil {
		return nil, err
	}
	idx, _, err := listRepoFiles(d.repo, "index", hexID)
	if err != nil {
		return nil, err
	}
	snaps, _, err := listRepoFiles(d.repo, "snapshots", hexID)
	if err != nil {
		return nil, err
	}
	return map[repoFileKind][]string{fileDataPack: largerHalf(packs, sizes), fileIndex: idx, fileSnapshot: snaps}, nil
}
