// Package prune removes packs no snapshot needs, in two phases: a pack found
// unreferenced is first marked (a marker object records when), and deleted by
// a later prune only if it is still unreferenced once the grace period has
// passed. The grace period must be longer than the longest backup, so packs
// written by a backup that was interrupted, or whose lock went stale while
// it still ran, survive until that backup resumes or finishes.
//
// Plan is pure (reads only); Execute deletes in the order that keeps the
// repository valid at every step: new index, then old index files, then
// packs, then old markers. Prune needs the exclusive lock.
//
// Imports: repository, snapshot and backend. Like all of the engine it never
// imports Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package prune

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// Options tune prune.
type Options struct {
	// Grace is how long a pack stays marked before deletion: 24h.
	Grace time.Duration
	Now   func() time.Time
}

// Marker records packs found unreferenced at a time.
type Marker struct {
	Time  time.Time       `json:"time"`
	Packs []repository.ID `json:"packs"`
}

// Plan is what Execute will do.
type Plan struct {
	// Mark are unreferenced packs seen for the first time.
	Mark []repository.ID
	// Delete are packs marked at least Grace ago and still unreferenced.
	Delete []repository.ID
	// Waiting are marked packs still inside the grace period.
	Waiting []repository.ID
	// DeleteBytes is the size of the packs to delete.
	DeleteBytes int64

	now        time.Time
	packs      map[repository.ID][]repository.PackBlob
	indexFiles []repository.ID
	markers    []string
	marks      map[repository.ID]time.Time
}

// Empty reports whether there is nothing to do.
func (p *Plan) Empty() bool { return len(p.Mark) == 0 && len(p.Delete) == 0 }

// NewPlan computes what to mark and delete. The repository's index must not
// be loaded yet; NewPlan loads it.
func NewPlan(ctx context.Context, repo *repository.Repo, opt Options) (*Plan, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Grace < 0 {
		return nil, fmt.Errorf("prune: negative grace period %v", opt.Grace)
	}
	if err := repo.LoadIndex(ctx); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if _, err := repo.IndexOrphanPacks(ctx); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	used, err := referenced(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("prune: refusing to delete anything: %w", err)
	}
	p := &Plan{now: opt.Now(), packs: repo.Index().Packs(), indexFiles: repo.IndexFileIDs()}

	marks := map[repository.ID]time.Time{}
	if err := repo.Backend().List(ctx, backend.MarkerFile, func(fi backend.FileInfo) error {
		if strings.HasPrefix(fi.Name, repository.OrphanHintPrefix) {
			return nil // not a prune mark
		}
		b, err := backend.LoadAll(ctx, repo.Backend(), backend.Handle{Type: backend.MarkerFile, Name: fi.Name})
		if err != nil {
			return err
		}
		var m Marker
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("marker %s: %w", fi.Name, err)
		}
		p.markers = append(p.markers, fi.Name)
		for _, id := range m.Packs {
			if t, ok := marks[id]; !ok || m.Time.Before(t) {
				marks[id] = m.Time
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("prune: read markers: %w", err)
	}

	p.marks = marks
	for pid, blobs := range p.packs {
		live := false
		for _, b := range blobs {
			if used[b.ID] {
				live = true
				break
			}
		}
		if live {
			continue
		}
		t, marked := marks[pid]
		switch {
		case !marked:
			p.Mark = append(p.Mark, pid)
		case p.now.Sub(t) >= opt.Grace:
			p.Delete = append(p.Delete, pid)
			for _, b := range blobs {
				p.DeleteBytes += int64(b.Length)
			}
		default:
			p.Waiting = append(p.Waiting, pid)
		}
	}
	if opt.Grace == 0 {
		// No grace: marking and deleting happen in one run.
		p.Delete = append(p.Delete, p.Mark...)
		for _, pid := range p.Mark {
			for _, b := range p.packs[pid] {
				p.DeleteBytes += int64(b.Length)
			}
		}
	}
	for _, s := range [][]repository.ID{p.Mark, p.Delete, p.Waiting} {
		repository.SortIDs(s)
	}
	return p, nil
}

// referenced returns every blob some snapshot needs. Any unreadable
// snapshot or tree is an error: prune must not guess.
func referenced(ctx context.Context, repo *repository.Repo) (map[repository.ID]bool, error) {
	snaps, bad, err := snapshot.LoadAll(ctx, repo)
	if err != nil {
		return nil, err
	}
	for id, err := range bad {
		return nil, fmt.Errorf("snapshot %s unreadable (run 'backupd check'): %w", id.Str(), err)
	}
	used := map[repository.ID]bool{}
	var visit func(id repository.ID) error
	visit = func(id repository.ID) error {
		if used[id] {
			return nil
		}
		used[id] = true
		t, err := snapshot.LoadTree(ctx, repo, id)
		if err != nil {
			return err
		}
		for _, n := range t.Nodes {
			for _, c := range n.Content {
				used[c] = true
			}
			if n.Subtree != nil {
				if err := visit(*n.Subtree); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, s := range snaps {
		if err := visit(s.Tree); err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", s.ID.Str(), err)
		}
	}
	return used, nil
}

// Execute carries out the plan.
func (p *Plan) Execute(ctx context.Context, repo *repository.Repo) error {
	be := repo.Backend()
	del := map[repository.ID]bool{}
	for _, id := range p.Delete {
		del[id] = true
	}
	// Pending marks keep their original time, so each pack's grace runs
	// from when it was first found unreferenced.
	pending := map[time.Time][]repository.ID{}
	for _, id := range p.Mark {
		if !del[id] {
			pending[p.now] = append(pending[p.now], id)
		}
	}
	for _, id := range p.Waiting {
		pending[p.marks[id]] = append(pending[p.marks[id]], id)
	}
	if len(p.Delete) == 0 {
		return p.rewriteMarkers(ctx, be, pending)
	}
	// 1. A full index without the doomed packs, superseding all others.
	full := &repository.IndexFile{Supersedes: p.indexFiles}
	for _, pid := range repository.SortedIDs(p.packs) {
		if !del[pid] {
			full.Packs = append(full.Packs, repository.IndexPack{ID: pid, Blobs: p.packs[pid]})
		}
	}
	newIdx, err := repo.SaveIndexFile(ctx, full)
	if err != nil {
		return fmt.Errorf("prune: write index: %w", err)
	}
	// 2. Old index files.
	for _, id := range p.indexFiles {
		if id == newIdx {
			continue
		}
		if err := be.Remove(ctx, backend.Handle{Type: backend.IndexFile, Name: id.String()}); err != nil {
			return fmt.Errorf("prune: remove index %s: %w", id.Str(), err)
		}
	}
	// 3. Packs.
	for _, id := range p.Delete {
		if err := be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: id.String()}); err != nil {
			return fmt.Errorf("prune: remove pack %s: %w", id.Str(), err)
		}
	}
	// 4. Markers: new markers keep the pending marks, then the old ones go.
	return p.rewriteMarkers(ctx, be, pending)
}

// rewriteMarkers stores the marks still pending (with their first-seen
// time) and removes every other marker. Packs referenced again lose their
// mark, so if they become unreferenced later their grace period starts
// over.
func (p *Plan) rewriteMarkers(ctx context.Context, be backend.Backend, pending map[time.Time][]repository.ID) error {
	kept := map[string]bool{}
	for t, ids := range pending {
		repository.SortIDs(ids)
		m := Marker{Time: t, Packs: ids}
		if err := saveMarker(ctx, be, m); err != nil {
			return err
		}
		b, _ := json.Marshal(m)
		kept[repository.Hash(b).String()] = true
	}
	for _, name := range p.markers {
		if kept[name] {
			continue
		}
		if err := be.Remove(ctx, backend.Handle{Type: backend.MarkerFile, Name: name}); err != nil {
			return fmt.Errorf("prune: remove marker %s: %w", name, err)
		}
	}
	return nil
}

func saveMarker(ctx context.Context, be backend.Backend, m Marker) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	name := repository.Hash(b).String()
	if err := be.Save(ctx, backend.Handle{Type: backend.MarkerFile, Name: name}, bytes.NewReader(b)); err != nil && !errors.Is(err, backend.ErrExists) {
		return fmt.Errorf("prune: write marker: %w", err)
	}
	return nil
}
