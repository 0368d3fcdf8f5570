package main

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// backupd: a directory repository (or s3:// in S3 mode), the password in
// BACKUPD_PASSWORD, one policy "bench", its defaults otherwise (zstd at its
// fastest level, FastCDC 256 KiB/1 MiB/4 MiB).
type backupdDriver struct{ toolBase }

func (d *backupdDriver) name() string           { return "backupd" }
func (d *backupdDriver) versionCmd() invocation { return d.cmd("--version") }
func (d *backupdDriver) initCmd() invocation    { return d.repoCmd("init") }
func (d *backupdDriver) backupCmd(src string, _ int) invocation {
	return d.repoCmd("backup", "--policy", "bench", "--json", src)
}
func (d *backupdDriver) restoreCmd(_, target string, _ int) invocation {
	return d.repoCmd("restore", "--target", target, "--json", "latest")
}

// repoCmd is backupd's command with --repo (and the S3 flags) after it.
func (d *backupdDriver) repoCmd(command string, args ...string) invocation {
	all := []string{command, "--repo", d.repo}
	if d.s3 != nil {
		all = append(all, backupdS3Flags()...)
	}
	return d.cmd(append(all, args...)...)
}
func (d *backupdDriver) restoredRoot(target, _ string) string { return target }

func (d *backupdDriver) settings() string {
	return "backup --policy bench (defaults: zstd fastest, FastCDC 256 KiB/1 MiB/4 MiB, AES-256-GCM); directory repository; BACKUPD_PASSWORD"
}

func (d *backupdDriver) snapshotID(p *procResult, _ int) (string, error) {
	var out struct {
		SnapshotID string `json:"snapshot_id"`
	}
	if err := json.Unmarshal([]byte(jsonSummary(p.Stdout)), &out); err != nil || out.SnapshotID == "" {
		return "", fmt.Errorf("backupd printed no snapshot_id: %.200s", p.Stdout)
	}
	return out.SnapshotID, nil
}

func (d *backupdDriver) restoreIDCmd(id, _, target string) invocation {
	return d.repoCmd("restore", "--target", target, "--json", id)
}

func (d *backupdDriver) checkCmd(readData bool) invocation {
	if readData {
		return d.repoCmd("check", "--read-data", "--json")
	}
	return d.repoCmd("check", "--json")
}

func (d *backupdDriver) checkSubsetCmd() (invocation, bool) {
	return d.repoCmd("check", "--read-data-subset", "1/"+strconv.Itoa(subsetShare), "--json"), true
}

func (d *backupdDriver) pruneCmds(keepLast int) []invocation {
	if keepLast > 0 {
		return []invocation{d.repoCmd("forget", "--keep-last", strconv.Itoa(keepLast), "--prune", "--grace", "0")}
	}
	return []invocation{d.repoCmd("prune", "--grace", "0")}
}

func (d *backupdDriver) unlockCmd() (invocation, bool) { return d.repoCmd("unlock"), true }

func (d *backupdDriver) lockError(out string) bool {
	return containsAny(out, "repository is locked", "locked by")
}

func (d *backupdDriver) listCmd() invocation { return d.repoCmd("snapshots", "--json") }

func (d *backupdDriver) listSnapshots(stdout string) ([]string, error) {
	return jsonIDs(stdout, "backupd snapshots")
}

func (d *backupdDriver) repoFiles() (map[repoFileKind][]string, error) {
	// Data and tree packs share data/; the bigger half are data packs.
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

// jsonIDs returns the "id" of every object of a JSON array (restic's,
// backupd's and kopia's snapshot listings).
func jsonIDs(stdout, what string) ([]string, error) {
	var list []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		return nil, fmt.Errorf("%s: not a JSON list: %w", what, err)
	}
	ids := make([]string, 0, len(list))
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	return ids, nil
}
