package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
)

// borg 1.2: repokey encryption, lz4 compression, BORG_PASSPHRASE and
// BORG_BASE_DIR (caches, security files) in the tool's home; archives
// are named snapN.
type borgDriver struct{ toolBase }

func (d *borgDriver) name() string           { return "borg" }
func (d *borgDriver) versionCmd() invocation { return d.cmd("--version") }
func (d *borgDriver) initCmd() invocation    { return d.cmd("init", "--encryption=repokey", d.repo) }
func (d *borgDriver) archive(seq int) string { return fmt.Sprintf("%s::snap%d", d.repo, seq) }
func (d *borgDriver) backupCmd(src string, seq int) invocation {
	inv := d.cmd("create", "--compression", "lz4", d.archive(seq), src)
	inv.warnExit = 1
	return inv
}
func (d *borgDriver) restoreCmd(_, target string, seq int) invocation {
	inv := d.cmd("extract", d.archive(seq))
	inv.dir = target // borg extracts into the working directory
	inv.warnExit = 1
	return inv
}
func (d *borgDriver) restoredRoot(target, src string) string { return underTarget(target, src) }

func (d *borgDriver) settings() string {
	return "init --encryption=repokey; create --compression lz4 (files cache ctime,size,inode, the default); BORG_PASSPHRASE; prune then compact"
}

func (d *borgDriver) snapshotID(p *procResult, seq int) (string, error) {
	if !p.ok() {
		return "", fmt.Errorf("borg create failed: %s", p.Failed)
	}
	return fmt.Sprintf("snap%d", seq), nil
}

func (d *borgDriver) restoreIDCmd(id, _, target string) invocation {
	inv := d.cmd("extract", d.repo+"::"+id)
	inv.dir = target // borg extracts into the working directory
	inv.warnExit = 1
	return inv
}

func (d *borgDriver) checkCmd(readData bool) invocation {
	if readData {
		return d.cmd("check", "--verify-data", d.repo)
	}
	return d.cmd("check", d.repo)
}

// borg has no partial read-back: --max-duration checks part of the
// segments' CRCs, without decrypting and verifying data.
func (d *borgDriver) checkSubsetCmd() (invocation, bool) { return invocation{}, false }

func (d *borgDriver) pruneCmds(keepLast int) []invocation {
	var invs []invocation
	if keepLast > 0 {
		invs = append(invs, d.cmd("prune", "--keep-last", strconv.Itoa(keepLast), d.repo))
	}
	return append(invs, d.cmd("compact", d.repo))
}

func (d *borgDriver) unlockCmd() (invocation, bool) { return d.cmd("break-lock", d.repo), true }

func (d *borgDriver) lockError(out string) bool {
	return containsAny(out, "failed to create/acquire the lock", "lock.exclusive", "locktimeout")
}

func (d *borgDriver) listCmd() invocation { return d.cmd("list", "--json", d.repo) }

func (d *borgDriver) listSnapshots(stdout string) ([]string, error) {
	var l struct {
		Archives []struct {
			Name string `json:"name"`
		} `json:"archives"`
	}
	if err := json.Unmarshal([]byte(stdout), &l); err != nil {
		return nil, fmt.Errorf("borg list: not JSON: %w", err)
	}
	var names []string
	for _, a := range l.Archives {
		names = append(names, a.Name)
	}
	return names, nil
}

var (
	borgSegment = regexp.MustCompile(`^[0-9]+$`)
	borgIndex   = regexp.MustCompile(`^index\.[0-9]+$`)
)

// borg keeps data, archives and its manifest as objects in numbered
// segment files under data/, and its index in index.N: it has no
// snapshot files of its own.
func (d *borgDriver) repoFiles() (map[repoFileKind][]string, error) {
	segs, sizes, err := listRepoFiles(d.repo, "data", borgSegment)
	if err != nil {
		return nil, err
	}
	idx, _, err := listRepoFiles(d.repo, ".", borgIndex)
	if err != nil {
		return nil, err
	}
	return map[repoFileKind][]string{fileDataPack: largerHalf(segs, sizes), fileIndex: idx}, nil
}
