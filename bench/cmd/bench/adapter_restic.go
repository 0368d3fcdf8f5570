package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// restic: repository format 2 (the default since restic 0.14), RESTIC_PASSWORD,
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

// repoFiles tells data packs from tree packs by restic's index (cat
// index): a pack with a data blob is a data pack.
func (d *resticDriver) repoFiles(ctx context.Context) (map[repoFileKind][]string, error) {
	idx, _, err := listRepoFiles(d.repo, "index", hexID)
	if err != nil {
		return nil, err
	}
	dataPacks := map[string]bool{}
	for _, rel := range idx {
		out, err := query(ctx, d.cmd("cat", "index", filepath.Base(rel)))
		if err != nil {
			return nil, err
		}
		var ix struct {
			Packs []struct {
				ID    string `json:"id"`
				Blobs []struct {
					Type string `json:"type"`
				} `json:"blobs"`
			} `json:"packs"`
		}
		if err := json.Unmarshal([]byte(out), &ix); err != nil {
			return nil, fmt.Errorf("restic cat index %s: %w", filepath.Base(rel), err)
		}
		for _, p := range ix.Packs {
			for _, b := range p.Blobs {
				if b.Type == "data" {
					dataPacks[p.ID] = true
				}
			}
		}
	}
	packs, _, err := listRepoFiles(d.repo, "data", hexID)
	if err != nil {
		return nil, err
	}
	packs = slices.DeleteFunc(packs, func(rel string) bool { return !dataPacks[filepath.Base(rel)] })
	snaps, _, err := listRepoFiles(d.repo, "snapshots", hexID)
	if err != nil {
		return nil, err
	}
	return map[repoFileKind][]string{fileDataPack: packs, fileIndex: idx, fileSnapshot: snaps}, nil
}
