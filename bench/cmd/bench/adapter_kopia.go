package main

import (
	"fmt"
	"regexp"
	"strconv"
)

// kopia: a filesystem repository, KOPIA_PASSWORD, its configuration,
// cache and logs in the tool's home, its defaults otherwise (no
// compression).
type kopiaDriver struct{ toolBase }

func (d *kopiaDriver) name() string           { return "kopia" }
func (d *kopiaDriver) versionCmd() invocation { return d.cmd("--version") }
func (d *kopiaDriver) initCmd() invocation {
	if d.s3 != nil {
		// The keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
		// (kopia's defaults for --access-key and --secret-access-key), so
		// they are not on the command line.
		return d.cmd("repository", "create", "s3", "--bucket", d.s3.bucket, "--endpoint", d.s3.endpoint,
			"--disable-tls", "--region", s3Region)
	}
	return d.cmd("repository", "create", "filesystem", "--path", d.repo)
}
func (d *kopiaDriver) backupCmd(src string, _ int) invocation {
	return d.cmd("snapshot", "create", src)
}
func (d *kopiaDriver) restoreCmd(src, target string, _ int) invocation {
	// With a path as the source kopia restores its latest snapshot.
	return d.cmd("snapshot", "restore", src, target)
}
func (d *kopiaDriver) restoredRoot(target, _ string) string { return target }

func (d *kopiaDriver) settings() string {
	return "repository create filesystem; snapshot create (defaults: no compression, splitter and encryption defaults); KOPIA_PASSWORD; maintenance run --full --safety=none to free space"
}

// kopiaCreated is kopia's line naming a new snapshot.
var kopiaCreated = regexp.MustCompile(`Created snapshot with root \S+ and ID (\S+)`)

func (d *kopiaDriver) snapshotID(p *procResult, _ int) (string, error) {
	if m := kopiaCreated.FindStringSubmatch(p.output()); m != nil {
		return m[1], nil
	}
	return "", fmt.Errorf("kopia printed no snapshot ID: %s", lastLines(p.output(), 3))
}

func (d *kopiaDriver) restoreIDCmd(id, _, target string) invocation {
	return d.cmd("snapshot", "restore", id, target)
}

func (d *kopiaDriver) checkCmd(readData bool) invocation {
	if readData {
		return d.cmd("snapshot", "verify", "--verify-files-percent=100")
	}
	return d.cmd("snapshot", "verify")
}

func (d *kopiaDriver) checkSubsetCmd() (invocation, bool) {
	return d.cmd("snapshot", "verify", "--verify-files-percent="+strconv.Itoa(100/subsetShare)), true
}

func (d *kopiaDriver) pruneCmds(keepLast int) []invocation {
	var invs []invocation
	if keepLast > 0 {
		invs = append(invs,
			d.cmd("policy", "set", "--global", "--keep-latest", strconv.Itoa(keepLast),
				"--keep-hourly", "0", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0", "--keep-annual", "0"),
			d.cmd("snapshot", "expire", "--all", "--delete"))
	}
	return append(invs, d.cmd("maintenance", "run", "--full", "--safety=none"))
}

// kopia takes no repository locks.
func (d *kopiaDriver) unlockCmd() (invocation, bool) { return invocation{}, false }

func (d *kopiaDriver) lockError(string) bool { return false }

func (d *kopiaDriver) listCmd() invocation { return d.cmd("snapshot", "list", "--all", "--json") }

func (d *kopiaDriver) listSnapshots(stdout string) ([]string, error) {
	return jsonIDs(stdout, "kopia snapshot list")
}

var (
	kopiaPack  = regexp.MustCompile(`^p[0-9a-f]+.*\.f$`)
	kopiaIndex = regexp.MustCompile(`^x[0-9a-f_]+.*\.f$`)
)

// kopia keeps file data in p packs and directory listings and snapshot
// manifests as contents of q packs: it has no snapshot files of its own.
func (d *kopiaDriver) repoFiles() (map[repoFileKind][]string, error) {
	packs, _, err := listRepoFiles(d.repo, ".", kopiaPack)
	if err != nil {
		return nil, err
	}
	idx, _, err := listRepoFiles(d.repo, ".", kopiaIndex)
	if err != nil {
		return nil, err
	}
	return map[repoFileKind][]string{fileDataPack: packs, fileIndex: idx}, nil
}
