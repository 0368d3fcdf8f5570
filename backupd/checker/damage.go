package checker

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/meshbackup/backupd/backupd/repository"
)

// Damage found by a check is recorded in the repository (damaged/ records,
// see repository.Damage), by the CLI's check and the daemon's verify runs
// alike: backups then store the damaged blobs again from the source
// instead of deduplicating against the lost copies. Damage already
// recorded is reported by every later check, with or without read-back,
// until backups or repairs have cured it (docs/DESIGN.md §3.7; §8 scenarios 22 and 23).

// Suggested repairs, in the order the runbook gives them.
const (
	suggestRepairIndex     = "backupd repair index"
	suggestBackup          = "backupd backup (of each affected source, to store lost data again)"
	suggestRepairSnapshots = "backupd repair snapshots"
	suggestReadData        = "backupd check --read-data"
)

// loadDamage reads the damage records and tells the check's index about
// them, before any pack is added to it.
func loadDamage(ctx context.Context, repo *repository.Repo) (*repository.Damage, error) {
	d, err := repo.LoadDamage(ctx)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	repo.Index().SetDamage(d)
	return d, nil
}

// blobProblem is the problem of a blob a file needs that has no usable
// copy: recorded damaged, or not indexed at all.
func blobProblem(repo *repository.Repo, id repository.ID, path string) Problem {
	if loc, ok := repo.Index().Lookup(id); ok && loc.Damaged {
		return Problem{Kind: "damaged-blob", Object: "blob/" + id.String(), Pack: loc.Pack.String(),
			Message: fmt.Sprintf("blob %s of %s was recorded damaged in pack %s; a backup of the source stores it again, repair snapshots removes it from the snapshots", id.Str(), path, loc.Pack.Str()),
			id:      id, isBlob: true}
	}
	return Problem{Kind: "missing-blob", Object: "blob/" + id.String(), Message: fmt.Sprintf("blob %s of %s is not in any index", id.Str(), path)}
}

// unindexedWarning is the warning about a pack no readable index lists.
func unindexedWarning(pid repository.ID, badIndex bool, d *repository.Damage) string {
	switch {
	case d.Names(pid):
		return fmt.Sprintf("pack %s is not indexed: it was recorded damaged, its blobs are not used (prune removes it)", pid.Str())
	case badIndex:
		return fmt.Sprintf("pack %s is not in any readable index (a damaged index file may list it): run 'backupd repair index'", pid.Str())
	}
	return fmt.Sprintf("pack %s is not indexed (left by an interrupted backup, or its index file was lost): the next backup after an interrupted one reuses it; 'backupd repair index' indexes it now; prune removes it if nothing needs it", pid.Str())
}

// finish records the damage a check found, turns problems about packs
// already recorded damaged into warnings (their blobs are reported where
// snapshots need them), and adds the suggested repairs.
func finish(ctx context.Context, repo *repository.Repo, opt Options, rep *Report) {
	if rep == nil {
		return
	}
	// Only damage recorded before this check is downgraded: what it finds
	// now is reported as a problem, then recorded.
	var kept []Problem
	for _, p := range rep.Problems {
		if p.Kind == "missing-pack" || p.Kind == "corrupt-pack" {
			if pid, err := repository.ParseID(strings.TrimPrefix(p.Object, "data/")); err == nil && rep.damage.Names(pid) {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s (recorded damaged; what snapshots still need from it is reported as damaged blobs; run '%s')", p.Message, suggestRepairIndex))
				continue
			}
		}
		kept = append(kept, p)
	}
	rep.Problems = kept
	if !opt.NoRecord {
		recordDamage(ctx, repo, opt, rep)
	}
	suggest := map[string]bool{}
	for _, p := range rep.Problems {
		switch p.Kind {
		case "bad-index", "missing-pack", "index-mismatch":
			suggest[suggestRepairIndex] = true
		case "corrupt-pack":
			suggest[suggestReadData] = !opt.ReadData
			suggest[suggestRepairIndex] = true
		case "corrupt-blob", "damaged-blob", "bad-tree", "missing-blob":
			suggest[suggestRepairIndex] = true
			suggest[suggestBackup] = true
			suggest[suggestRepairSnapshots] = true
		}
	}
	if rep.UnindexedPacks > 0 && len(rep.Problems) > 0 {
		suggest[suggestRepairIndex] = true
	}
	rep.Suggestions = nil
	for _, s := range []string{suggestReadData, suggestRepairIndex, suggestBackup, suggestRepairSnapshots} {
		if suggest[s] {
			rep.Suggestions = append(rep.Suggestions, s)
		}
	}
}

// recordDamage writes a damage record of what the check found damaged or
// missing and no record names yet: missing packs (with the blobs the index
// lists in them), and blobs that failed their read-back or, for trees,
// their load. A pack whose trailer alone is damaged is not recorded: its
// blobs may be intact (check --read-data tells) and repair index salvages
// them. A failure to record is a warning: the check itself stands.
func recordDamage(ctx context.Context, repo *repository.Repo, opt Options, rep *Report) {
	d := rep.damage
	if d == nil {
		d = repository.NewDamage()
	}
	rec := &repository.DamageRecord{FoundBy: opt.FoundBy}
	if rec.FoundBy == "" {
		rec.FoundBy = "check"
		if opt.ReadData {
			rec.FoundBy = "check --read-data"
		}
	}
	seen := map[repository.DamagedBlob]bool{}
	addBlob := func(b repository.DamagedBlob) {
		if !seen[b] && !d.IsDamaged(b.ID, b.Pack) {
			seen[b] = true
			rec.Blobs = append(rec.Blobs, b)
		}
	}
	var lostPacks []repository.ID
	for _, p := range rep.Problems {
		switch {
		case p.Kind == "missing-pack":
			pid, err := repository.ParseID(strings.TrimPrefix(p.Object, "data/"))
			if err == nil && !d.Packs[pid] {
				lostPacks = append(lostPacks, pid)
			}
		case p.isBlob && p.Pack != "" && (p.Kind == "corrupt-blob" || p.Kind == "bad-tree"):
			pid, err := repository.ParseID(p.Pack)
			if err == nil {
				addBlob(repository.DamagedBlob{ID: p.id, Pack: pid})
			}
		}
	}
	if len(lostPacks) > 0 {
		// The blobs of a missing pack, as the index files list them (the
		// check's own index keeps one copy per blob).
		files, err := repo.ReadIndexFiles(ctx)
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("could not record the damage found: %v", err))
			return
		}
		for _, f := range files {
			if f.File == nil {
				continue
			}
			for _, ip := range f.File.Packs {
				if slices.Contains(lostPacks, ip.ID) {
					for _, b := range ip.Blobs {
						addBlob(repository.DamagedBlob{ID: b.ID, Pack: ip.ID})
					}
				}
			}
		}
		rec.Packs = lostPacks
	}
	if len(rec.Packs) == 0 && len(rec.Blobs) == 0 {
		return
	}
	id, err := repo.SaveDamageRecord(ctx, rec)
	if err != nil {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("could not record the damage found (backups will keep deduplicating against it): %v", err))
		return
	}
	rep.Recorded = "damaged/" + id.String()
	if rep.damage == nil {
		rep.damage = repository.NewDamage()
	}
	rep.damage.Add(rec)
}
