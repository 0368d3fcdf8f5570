package snapshot

import (
	"context"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
)

// RepairInfo records, in a snapshot written by Repair, which snapshot it
// replaces and which of its files lost data.
type RepairInfo struct {
	Original repository.ID `json:"original"`
	Time     time.Time     `json:"time"`
	// Files are the paths that lost data, with what was done to them.
	Files []RepairedFile `json:"files"`
}

// Repair actions.
const (
	ActionTruncated = "truncated" // content cut before the first lost chunk
	ActionRemoved   = "removed"   // the entry was left out
	ActionEmptied   = "emptied"   // a directory whose tree was lost, kept empty
)

// RepairedFile is one file or directory that lost data.
type RepairedFile struct {
	Path      string `json:"path"`
	Action    string `json:"action"`
	LostBlobs int    `json:"lost_blobs,omitempty"`
	// KeptBytes is the length of a truncated file's remaining content.
	KeptBytes uint64 `json:"kept_bytes,omitempty"`
}

// RepairOptions tune Repair.
type RepairOptions struct {
	// Remove leaves damaged files (and directories whose tree is lost)
	// out of the rewritten snapshots; by default a damaged file is kept,
	// truncated before its first lost chunk, and named in the snapshot's
	// Repaired record.
	Remove bool
	// DryRun only reports.
	DryRun bool
	Now    func() time.Time
}

// RepairedSnapshot is one snapshot Repair rewrote.
type RepairedSnapshot struct {
	Original    repository.ID  `json:"original"`
	Replacement repository.ID  `json:"replacement"`
	Policy      string         `json:"policy"`
	Hostname    string         `json:"hostname"`
	Source      string         `json:"source"`
	Seq         uint64         `json:"seq"`
	Time        time.Time      `json:"time"`
	Files       []RepairedFile `json:"files"`
}

// RepairResult is what Repair did.
type RepairResult struct {
	Snapshots  int                `json:"snapshots"`
	Rewritten  []RepairedSnapshot `json:"rewritten"`
	Unreadable map[string]string  `json:"unreadable"`
	// Resolved is how many recorded damaged blobs no snapshot refers to
	// any more.
	Resolved int  `json:"resolved_damage"`
	DryRun   bool `json:"dry_run"`
}

// Repair rewrites every snapshot that refers to data the repository has
// lost: blobs with no healthy indexed copy (not indexed, or recorded
// damaged) and trees that cannot be loaded. A rewritten snapshot is a new
// snapshot object with new trees, keeping the original's policy, host,
// source, seq, time, parent and totals, so that retention and "latest"
// treat it as the same point in time; it is written (after its trees,
// Flush) before the original is removed. A rerun after a crash between the
// two finds the replacement by its Repaired record and only removes the
// original.
//
// The caller holds the exclusive lock and has loaded the index.
func Repair(ctx context.Context, r *repository.Repo, opt RepairOptions) (*RepairResult, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	snaps, bad, err := LoadAll(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("repair snapshots: %w", err)
	}
	res := &RepairResult{Snapshots: len(snaps) + len(bad), Rewritten: []RepairedSnapshot{}, Unreadable: map[string]string{}, DryRun: opt.DryRun}
	for id, err := range bad {
		res.Unreadable[id.String()] = err.Error()
	}
	replaced := map[repository.ID]*Snapshot{} // original -> replacement already written
	for _, s := range snaps {
		if s.Repaired != nil {
			replaced[s.Repaired.Original] = s
		}
	}
	// A pack an index lists may be gone (no check has recorded it yet):
	// its blobs are lost too.
	stored := map[repository.ID]bool{}
	if err := r.Backend().List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if id, err := repository.ParseID(fi.Name); err == nil {
			stored[id] = true
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("repair snapshots: list packs: %w", err)
	}
	rw := &rewriter{r: r, opt: opt, memo: map[repository.ID]rewritten{}, stored: stored}
	type pending struct {
		old, new *Snapshot
	}
	var todo []pending
	for _, s := range snaps {
		if done := replaced[s.ID]; done != nil {
			todo = append(todo, pending{old: s, new: done})
			continue
		}
		out, err := rw.tree(ctx, s.Tree)
		if err != nil {
			return nil, fmt.Errorf("repair snapshots: snapshot %s: %w", s.ID.Str(), err)
		}
		if !out.changed {
			continue
		}
		ns := *s
		ns.ID = repository.ID{}
		ns.Tree = out.id
		ns.DigestRuns = 0
		ns.Repaired = &RepairInfo{Original: s.ID, Time: opt.Now().UTC(), Files: prefixed("/", out.files)}
		todo = append(todo, pending{old: s, new: &ns})
	}
	if !opt.DryRun && len(todo) > 0 {
		// Invariant: trees, then the new snapshots, then removals.
		if err := r.Flush(ctx); err != nil {
			return nil, fmt.Errorf("repair snapshots: store trees: %w", err)
		}
	}
	for _, p := range todo {
		if !opt.DryRun && p.new.ID.IsNull() {
			if err := Save(ctx, r, p.new); err != nil {
				return nil, fmt.Errorf("repair snapshots: save the replacement of %s: %w", p.old.ID.Str(), err)
			}
		}
		if !opt.DryRun {
			if err := Remove(ctx, r, p.old.ID); err != nil && !errors.Is(err, backend.ErrNotFound) {
				return nil, fmt.Errorf("repair snapshots: %w", err)
			}
		}
		res.Rewritten = append(res.Rewritten, RepairedSnapshot{Original: p.old.ID, Replacement: p.new.ID, Policy: p.old.Policy,
			Hostname: p.old.Hostname, Source: p.old.Source, Seq: p.old.Seq, Time: p.old.Time, Files: p.new.Repaired.Files})
	}
	if opt.DryRun || len(bad) > 0 {
		return res, nil
	}
	// Every readable snapshot now refers only to healthy data: recorded
	// damaged copies without a healthy one are resolved.
	if d := r.Damage(); d != nil {
		rec := &repository.DamageRecord{FoundBy: "repair snapshots"}
		for _, pr := range d.Pairs() {
			if !rw.usable(pr.ID) && !d.Resolved[pr] {
				rec.Resolved = append(rec.Resolved, pr)
			}
		}
		if len(rec.Resolved) > 0 {
			if _, err := r.SaveDamageRecord(ctx, rec); err != nil {
				return res, fmt.Errorf("repair snapshots: %w", err)
			}
			res.Resolved = len(rec.Resolved)
		}
	}
	return res, nil
}

type rewritten struct {
	id      repository.ID
	changed bool
	lost    bool           // the tree itself could not be loaded
	files   []RepairedFile // paths relative to the tree
}

type rewriter struct {
	r    *repository.Repo
	opt  RepairOptions
	memo map[repository.ID]rewritten
	// stored holds the packs that exist.
	stored map[repository.ID]bool
}

// usable reports whether blob id has a healthy indexed copy in a stored
// pack.
func (w *rewriter) usable(id repository.ID) bool {
	loc, ok := w.r.Index().Lookup(id)
	return ok && !loc.Damaged && w.stored[loc.Pack]
}

func prefixed(dir string, files []RepairedFile) []RepairedFile {
	out := make([]RepairedFile, 0, len(files))
	for _, f := range files {
		f.Path = path.Join(dir, f.Path)
		out = append(out, f)
	}
	return out
}

// tree returns the repaired form of tree id.
func (w *rewriter) tree(ctx context.Context, id repository.ID) (rewritten, error) {
	if out, ok := w.memo[id]; ok {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return rewritten{}, err
	}
	var t *Tree
	var err error
	if w.usable(id) {
		t, err = LoadTree(ctx, w.r, id)
		if err != nil && !errors.Is(err, repository.ErrCorrupt) && !errors.Is(err, repository.ErrFormat) && !errors.Is(err, backend.ErrNotFound) {
			return rewritten{}, err
		}
	}
	if t == nil {
		empty, err := w.save(ctx, &Tree{})
		if err != nil {
			return rewritten{}, err
		}
		out := rewritten{id: empty, changed: true, lost: true}
		w.memo[id] = out
		return out, nil
	}
	out := rewritten{id: id}
	nt := &Tree{Nodes: make([]Node, 0, len(t.Nodes))}
	for _, n := range t.Nodes {
		switch n.Type {
		case TypeFile:
			lost, keep := 0, -1
			for i, c := range n.Content {
				if !w.usable(c) {
					lost++
					if keep < 0 {
						keep = i
					}
				}
			}
			if lost == 0 {
				nt.Nodes = append(nt.Nodes, n)
				continue
			}
			out.changed = true
			if w.opt.Remove {
				out.files = append(out.files, RepairedFile{Path: n.Name, Action: ActionRemoved, LostBlobs: lost})
				continue
			}
			content := append([]repository.ID(nil), n.Content[:keep]...)
			var size uint64
			for _, c := range content {
				loc, _ := w.r.Index().Lookup(c)
				size += uint64(loc.RawLen)
			}
			h := ContentHash(content)
			n.Content, n.Hash, n.Size = content, &h, size
			// A ctime no file has: the next backup reads the file again
			// (it is not "unchanged") and stores what the source holds.
			n.CtimeNS = 0
			n.TailRuns = 0
			nt.Nodes = append(nt.Nodes, n)
			out.files = append(out.files, RepairedFile{Path: n.Name, Action: ActionTruncated, LostBlobs: lost, KeptBytes: size})
		case TypeDir:
			sub, err := w.tree(ctx, *n.Subtree)
			if err != nil {
				return rewritten{}, err
			}
			if !sub.changed {
				nt.Nodes = append(nt.Nodes, n)
				continue
			}
			out.changed = true
			if sub.lost {
				if w.opt.Remove {
					out.files = append(out.files, RepairedFile{Path: n.Name, Action: ActionRemoved})
					continue
				}
				out.files = append(out.files, RepairedFile{Path: n.Name, Action: ActionEmptied})
			} else {
				out.files = append(out.files, prefixed(n.Name, sub.files)...)
			}
			sid := sub.id
			n.Subtree, n.Digest = &sid, nil
			nt.Nodes = append(nt.Nodes, n)
		default:
			nt.Nodes = append(nt.Nodes, n)
		}
	}
	if out.changed {
		if out.id, err = w.save(ctx, nt); err != nil {
			return rewritten{}, err
		}
	}
	w.memo[id] = out
	return out, nil
}

// save stores a tree (only computes its id on a dry run).
func (w *rewriter) save(ctx context.Context, t *Tree) (repository.ID, error) {
	b, err := t.Encode()
	if err != nil {
		return repository.ID{}, err
	}
	id := w.r.TreeID(b)
	if w.opt.DryRun {
		return id, nil
	}
	if _, _, err := w.r.SaveBlob(ctx, repository.TreeBlob, id, b); err != nil {
		return id, fmt.Errorf("store repaired tree: %w", err)
	}
	return id, nil
}
