package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/meshbackup/backupd/bench/faults"
)

// lostWritesScenario (scenario 7) is meant to lose the repository host's
// unsynced writes under each tool: dm-flakey's drop_writes on a loop
// device holding the repository's file system, the tool's backup, then
// the device's content as a power cut would leave it. It needs the
// kernel's device mapper. Where there is none (this benchmark's machine:
// a VM kernel without device mapper and without modules to load), every
// cell is not applicable, with what was found; lostWritesBlocked says it.
// backupd's own engine is tested against lost unsynced writes in process
// (backupd/backend/crashfs, docs/DESIGN.md §8 scenario 3).
type lostWritesScenario struct{}

func (lostWritesScenario) id() string { return faults.ScenarioLostWrites }

func (lostWritesScenario) notApplicable(*bed) string { return lostWritesBlocked() }

func (lostWritesScenario) run(context.Context, *bed) (*faults.Cell, error) {
	return nil, errors.New("lost writes through dm-flakey are not built: only the evidence that it cannot run here is")
}

// lostWritesBlocked returns why unsynced writes cannot be dropped under a
// tool on this machine, with the evidence, or "" when dm-flakey is there.
func lostWritesBlocked() string {
	var found []string
	if os.Geteuid() != 0 {
		return "dm-flakey and loop devices need root"
	}
	if _, err := os.Stat("/dev/mapper/control"); err != nil {
		found = append(found, "no device mapper in the kernel (/dev/mapper/control: "+errors.Unwrap(err).Error()+")")
	}
	if out, err := exec.Command("dmsetup", "targets").CombinedOutput(); err != nil {
		found = append(found, fmt.Sprintf("`dmsetup targets`: %v: %s", err, firstLine(strings.TrimSpace(string(out)))))
	} else if !strings.Contains(string(out), "flakey") {
		found = append(found, "`dmsetup targets` lists no flakey target")
	}
	if len(found) == 0 {
		return "dm-flakey is available but the scenario that uses it is not built yet"
	}
	if _, err := exec.LookPath("modprobe"); err != nil {
		found = append(found, "no modprobe to load dm-flakey")
	}
	if _, err := os.Stat("/lib/modules"); err != nil {
		found = append(found, "no kernel modules (/lib/modules missing)")
	}
	extra := ""
	if _, err := os.Stat("/dev/fuse"); err == nil {
		extra = "; /dev/fuse and loop devices exist, so a loop-mounted ext4 repository with an atomic crash image (a reflink copy of its image on xfs, or an image served by FUSE) could stand in; not built"
	}
	return "unsynced writes cannot be dropped under the tools here: " + strings.Join(found, "; ") + extra
}
