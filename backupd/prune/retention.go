package prune

import (
	"context"
	"fmt"

	"github.com/meshbackup/backupd/backupd/backend"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// RetentionOptions say which snapshots Forget considers and which it keeps.
type RetentionOptions struct {
	// Keep is the keep policy applied to each group.
	Keep snapshot.KeepPolicy
	// Select, if not nil, limits Forget to the snapshots it accepts (the
	// command line's --policy, the daemon's own policy, host and source).
	Select func(*snapshot.Snapshot) bool
	// DryRun decides without removing anything; no prune runs.
	DryRun bool
	// Prune runs Prune with PruneOptions after the snapshots are removed.
	Prune        bool
	PruneOptions Options
}

// Group is the retention decision for the snapshots of one policy, host
// and source.
type Group struct {
	Policy, Hostname, Source string
	// Keep and Remove are newest first.
	Keep, Remove []*snapshot.Snapshot
}

// ForgetResult is what Forget decided and did.
type ForgetResult struct {
	// Groups in the order their oldest snapshot sorts.
	Groups []Group
	// Unreadable snapshots are left alone: they are never removed.
	Unreadable map[repository.ID]error
	// Plan is the prune that ran, nil when none did.
	Plan *Plan
}

// Removed is the number of snapshots forgotten (or, in a dry run, that
// would be).
func (r *ForgetResult) Removed() int {
	n := 0
	for _, g := range r.Groups {
		n += len(g.Remove)
	}
	return n
}

// Forget applies a keep policy: separately for each policy, host and
// source, it keeps what the policy keeps and removes the other snapshots,
// then prunes when asked. It is the one implementation of retention, used by
// the command line's forget and the daemon's cycle.
//
// Invariants: the newest snapshot of each group, by sequence number and not
// by clock, is always kept (snapshot.ApplyPolicy), so a clock that jumped
// back never makes retention drop the newest backup; so is the newest
// snapshot that is not suspect (an unmounted volume backed up as a
// placeholder never pushes the last real data out).
//
// The caller holds the repository's exclusive lock, and ctx is the lock's.
func Forget(ctx context.Context, repo *repository.Repo, opt RetentionOptions) (*ForgetResult, error) {
	if opt.Keep.Empty() {
		return nil, fmt.Errorf("forget: the keep policy keeps nothing")
	}
	snaps, bad, err := snapshot.LoadAll(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("forget: %w", err)
	}
	res := &ForgetResult{Unreadable: bad}
	for _, snaps := range groupSnapshots(snaps, opt.Select) {
		g := Group{Policy: snaps[0].Policy, Hostname: snaps[0].Hostname, Source: snaps[0].Source,
			Keep: []*snapshot.Snapshot{}, Remove: []*snapshot.Snapshot{}}
		healthy := snapshot.LatestHealthy(snaps, "", "", "")
		for _, d := range snapshot.ApplyPolicy(snaps, opt.Keep) {
			if d.Keep || d.Snapshot == healthy {
				g.Keep = append(g.Keep, d.Snapshot)
			} else {
				g.Remove = append(g.Remove, d.Snapshot)
			}
		}
		res.Groups = append(res.Groups, g)
	}
	if opt.DryRun {
		return res, nil
	}
	for _, g := range res.Groups {
		for _, s := range g.Remove {
			if err := snapshot.Remove(ctx, repo, s.ID); err != nil {
				return res, err
			}
		}
	}
	if opt.Prune {
		plan, err := Prune(ctx, repo, opt.PruneOptions)
		res.Plan = plan
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// groupSnapshots splits the selected snapshots by policy, host and source,
// in the order each group's first snapshot appears in snaps.
func groupSnapshots(snaps []*snapshot.Snapshot, sel func(*snapshot.Snapshot) bool) [][]*snapshot.Snapshot {
	type key struct{ policy, host, source string }
	index := map[key]int{}
	var groups [][]*snapshot.Snapshot
	for _, s := range snaps {
		if sel != nil && !sel(s) {
			continue
		}
		k := key{s.Policy, s.Hostname, s.Source}
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], s)
	}
	return groups
}

// Prune plans and executes a prune, then removes the temp files that dead
// writers left in the backend, where it keeps any. The caller holds the
// exclusive lock, so no writer of its own is running.
func Prune(ctx context.Context, repo *repository.Repo, opt Options) (*Plan, error) {
	plan, err := NewPlan(ctx, repo, opt)
	if err != nil {
		return nil, err
	}
	if err := plan.Execute(ctx, repo); err != nil {
		return plan, err
	}
	if c, ok := backend.As[backend.TempCleaner](repo.Backend()); ok {
		if err := c.CleanTemp(); err != nil {
			return plan, fmt.Errorf("prune: clean temp files: %w", err)
		}
	}
	return plan, nil
}
