package main

import (
	"context"
	"fmt"

	"github.com/meshbackup/backupd/bench/faults"
)

// healthyScenario is the phase without faults: first backup, no-change
// backup, 1% change backup and a full restore of that last snapshot,
// compared with its manifest (the bed's baseline, which every other
// scenario starts from).
type healthyScenario struct{}

func (healthyScenario) id() string                { return faults.ScenarioHealthy }
func (healthyScenario) notApplicable(*bed) string { return "" }

func (healthyScenario) run(_ context.Context, b *bed) (*faults.Cell, error) {
	base := &b.base
	cell := &faults.Cell{Usage: map[string]faults.Usage{}}
	for k, p := range map[string]*procResult{
		faults.UsageFirstBackup: base.first, faults.UsageBackup: base.first, faults.UsageNoChange: base.noChange,
		faults.UsageChange: base.change, faults.UsageRestore: base.restore,
	} {
		if p != nil {
			cell.Usage[k] = p.Usage
		}
	}
	var e healthyEvidence
	if base.err != nil {
		e.failed = base.err.Error()
	}
	if base.restore != nil {
		e.restore = &base.restoreCheck
	}
	var verdict string
	cell.Outcome, verdict = classifyHealthy(e)
	if base.err == nil {
		verdict = fmt.Sprintf("%s: first backup %.2f s, no-change %.2f s, 1%% change %.2f s, full restore %.2f s",
			verdict, base.first.Usage.WallSeconds, base.noChange.Usage.WallSeconds, base.change.Usage.WallSeconds,
			base.restore.Usage.WallSeconds)
	}
	cell.Verdict = verdict
	return cell, nil
}
