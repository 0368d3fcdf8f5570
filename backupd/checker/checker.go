// Package checker verifies a repository: structure (every referenced blob is
// indexed, every indexed pack exists, index and pack trailers agree, every
// snapshot and tree decodes) and, on request, data (every blob of the chosen
// packs is read back, authenticated and re-hashed). Problems are reported
// with the snapshots and files they affect.
//
// The checker takes no lock: readers are never blocked. Prune deletes only
// packs marked unreferenced for longer than its grace period, so a check
// never races a deletion of live data.
//
// Imports: repository, snapshot and backend. Like all of the engine it never
// imports Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package checker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sort"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// Options choose what to read back.
type Options struct {
	// ReadData reads every pack; SubsetN/SubsetT read the packs whose
	// first id byte modulo SubsetT equals SubsetN-1 (a rotating 1/T).
	ReadData bool
	SubsetN  int
	SubsetT  int
	Logger   *slog.Logger
	// Progress, if set, is called after each pack read back.
	Progress func(done, total int)
	// NoRecord leaves damage found unrecorded. By default a check that
	// finds damaged or missing data records it in the repository (see
	// recordDamage), so that backups store it again.
	NoRecord bool
	// FoundBy names the caller in damage records ("check", "verify");
	// "check" by default.
	FoundBy string
}

// Problem is one finding.
type Problem struct {
	Kind    string        `json:"kind"` // missing-pack, corrupt-pack, corrupt-blob, bad-index, bad-snapshot, missing-blob, damaged-blob, index-mismatch, bad-tree
	Object  string        `json:"object"`
	Pack    string        `json:"pack,omitempty"`
	Message string        `json:"message"`
	id      repository.ID // blob, for affected-file lookup
	isBlob  bool
}

// Affected is a file that depends on damaged data.
type Affected struct {
	Snapshot string `json:"snapshot"`
	Policy   string `json:"policy"`
	Path     string `json:"path"`
}

// Report is the result of a check.
type Report struct {
	Problems       []Problem  `json:"problems"`
	Affected       []Affected `json:"affected"`
	Warnings       []string   `json:"warnings"`
	Snapshots      int        `json:"snapshots"`
	Packs          int        `json:"packs"`
	PacksRead      int        `json:"packs_read"`
	BlobsChecked   int        `json:"blobs_checked"`
	CorruptBlobs   int        `json:"corrupt_blobs"`
	UnindexedPacks int        `json:"unindexed_packs"`
	// Recorded names the damage record this check wrote, if any.
	Recorded string `json:"recorded,omitempty"`
	// Suggestions are the commands that repair what was found.
	Suggestions []string `json:"suggestions"`

	damage *repository.Damage
}

// OK reports whether nothing is wrong.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) add(p Problem) {
	for _, q := range r.Problems {
		if q.Kind == p.Kind && q.Object == p.Object && q.Message == p.Message {
			return
		}
	}
	r.Problems = append(r.Problems, p)
}

// Check runs the check. Missing data can be a prune that ran meanwhile
// (check takes no lock): if the first pass finds missing packs, blobs or
// index files and the set of index files changed while it ran, the check
// runs once more and that pass is reported.
func Check(ctx context.Context, repo *repository.Repo, opt Options) (rep *Report, err error) {
	defer func() {
		if err == nil {
			finish(ctx, repo, opt, rep)
		}
	}()
	before, err := indexNames(ctx, repo)
	if err != nil {
		return nil, err
	}
	rep, err = check(ctx, repo, opt)
	if err != nil || rep.OK() {
		return rep, err
	}
	for _, p := range rep.Problems {
		if p.Kind == "missing-pack" || p.Kind == "missing-blob" || p.Kind == "bad-index" || p.Kind == "bad-tree" {
			after, err := indexNames(ctx, repo)
			if err != nil || slices.Equal(before, after) {
				return rep, nil
			}
			fresh, err := repo.Fresh()
			if err != nil {
				return rep, nil
			}
			return check(ctx, fresh, opt)
		}
	}
	return rep, nil
}

// indexNames lists the index files, sorted.
func indexNames(ctx context.Context, repo *repository.Repo) ([]string, error) {
	var names []string
	if err := repo.Backend().List(ctx, backend.IndexFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("check: list index files: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

func check(ctx context.Context, repo *repository.Repo, opt Options) (*Report, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.SubsetT < 0 || opt.SubsetN < 0 || opt.SubsetT > 0 && (opt.SubsetN < 1 || opt.SubsetN > opt.SubsetT) {
		return nil, fmt.Errorf("check: subset %d/%d: want n/t with 1 <= n <= t", opt.SubsetN, opt.SubsetT)
	}
	rep := &Report{}
	var err error
	be := repo.Backend()
	if rep.damage, err = loadDamage(ctx, repo); err != nil {
		return nil, err
	}

	files, err := repo.ReadIndexFiles(ctx)
	badIndex := false
	if err != nil {
		return nil, err
	}
	superseded := map[repository.ID]bool{}
	for _, f := range files {
		if f.File != nil {
			for _, s := range f.File.Supersedes {
				superseded[s] = true
			}
		}
	}
	indexed := map[repository.ID][]repository.PackBlob{} // pack -> every index entry naming it
	for _, f := range files {
		if f.Err != nil {
			if errors.Is(f.Err, backend.ErrNotFound) {
				continue
			}
			if superseded[f.ID] {
				continue // a repair index that was interrupted before removing it
			}
			badIndex = true
			rep.add(Problem{Kind: "bad-index", Object: "index/" + f.Name, Message: f.Err.Error() + "; its packs are intact: run 'backupd repair index' to rebuild the index from them"})
			continue
		}
		if superseded[f.ID] {
			continue
		}
		for _, p := range f.File.Packs {
			repo.Index().AddPack(p.ID, p.Blobs)
			indexed[p.ID] = append(indexed[p.ID], p.Blobs...)
		}
	}

	sizes := map[repository.ID]int64{}
	if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := repository.ParseID(fi.Name)
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("data/%s: not a pack name", fi.Name))
			return nil
		}
		sizes[id] = fi.Size
		return nil
	}); err != nil {
		return nil, fmt.Errorf("check: list packs: %w", err)
	}
	rep.Packs = len(sizes)
	badPack := map[repository.ID]bool{}
	for _, pid := range repository.SortedIDs(indexed) {
		if _, ok := sizes[pid]; !ok {
			rep.add(Problem{Kind: "missing-pack", Object: "data/" + pid.String(), Message: fmt.Sprintf("pack %s is indexed but missing", pid.Str())})
			badPack[pid] = true
		}
	}
	for _, pid := range repository.SortedIDs(sizes) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		trailer, err := repo.ReadPackTrailer(ctx, pid, sizes[pid])
		if err != nil {
			rep.add(Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(), Message: err.Error()})
			badPack[pid] = true
			continue
		}
		want, ok := indexed[pid]
		if !ok {
			rep.UnindexedPacks++
			rep.Warnings = append(rep.Warnings, unindexedWarning(pid, badIndex, rep.damage))
			continue
		}
		inTrailer := map[repository.ID]repository.PackBlob{}
		for _, b := range trailer {
			inTrailer[b.ID] = b
		}
		for _, b := range want {
			bid := b.ID
			t, ok := inTrailer[bid]
			if !ok || t.Offset != b.Offset || t.Length != b.Length || t.Type != b.Type || t.RawLen != b.RawLen || t.Flags != b.Flags {
				rep.add(Problem{Kind: "index-mismatch", Object: "data/" + pid.String(), Pack: pid.String(),
					Message: fmt.Sprintf("index entry of blob %s disagrees with the trailer of pack %s", bid.Str(), pid.Str()),
					id:      bid, isBlob: true})
			}
		}
	}

	// Read back.
	if opt.ReadData || opt.SubsetT > 0 {
		var sel []repository.ID
		for _, pid := range repository.SortedIDs(sizes) {
			if opt.ReadData || int(pid[0])%opt.SubsetT == opt.SubsetN-1 {
				sel = append(sel, pid)
			}
		}
		for i, pid := range sel {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			readPack(ctx, repo, pid, rep)
			rep.PacksRead++
			if opt.Progress != nil {
				opt.Progress(i+1, len(sel))
			}
		}
	}

	// Snapshots and trees.
	snaps, bad, err := snapshot.LoadAll(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	rep.Snapshots = len(snaps) + len(bad)
	for id, err := range bad {
		rep.add(Problem{Kind: "bad-snapshot", Object: "snapshots/" + id.String(), Message: err.Error()})
	}
	damaged := map[repository.ID]bool{}
	for _, p := range rep.Problems {
		if p.isBlob {
			damaged[p.id] = true
		}
	}
	isDamaged := func(id repository.ID) bool {
		if damaged[id] {
			return true
		}
		loc, ok := repo.Index().Lookup(id)
		return ok && badPack[loc.Pack]
	}
	seenTree := map[repository.ID]bool{}
	missing := map[repository.ID]bool{}
	affected := map[Affected]bool{}
	for _, sn := range snaps {
		walkErr := walk(ctx, repo, sn.Tree, "/", seenTree, func(p string, n *snapshot.Node, treeErr error) {
			hit := false
			if treeErr != nil {
				hit = true
				prob := Problem{Kind: "bad-tree", Object: p, Message: treeErr.Error()}
				var ce *repository.CorruptError
				if errors.As(treeErr, &ce) && !ce.Pack.IsNull() {
					prob.Pack = ce.Pack.String()
					prob.id, prob.isBlob = ce.ID, true
				}
				rep.add(prob)
			} else {
				for _, id := range n.Content {
					if !repo.Index().Has(id) {
						hit = true
						if !missing[id] {
							missing[id] = true
							rep.add(blobProblem(repo, id, p))
						}
					} else if isDamaged(id) {
						hit = true
					}
				}
			}
			if hit {
				affected[Affected{Snapshot: sn.ID.Str(), Policy: sn.Policy, Path: p}] = true
			}
		})
		if walkErr != nil {
			return nil, walkErr
		}
	}
	for a := range affected {
		rep.Affected = append(rep.Affected, a)
	}
	sort.Slice(rep.Affected, func(i, j int) bool {
		a, b := rep.Affected[i], rep.Affected[j]
		if a.Snapshot != b.Snapshot {
			return a.Snapshot < b.Snapshot
		}
		return a.Path < b.Path
	})
	return rep, nil
}

// walk visits every file of a tree (trees shared between snapshots are
// walked once per snapshot, but loaded and reported once).
func walk(ctx context.Context, repo *repository.Repo, id repository.ID, dir string, seen map[repository.ID]bool, fn func(string, *snapshot.Node, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if loc, ok := repo.Index().Lookup(id); !ok {
		fn(dir, nil, fmt.Errorf("tree %s is not in any index", id.Str()))
		return nil
	} else if loc.Damaged {
		fn(dir, nil, fmt.Errorf("tree %s was recorded damaged in pack %s", id.Str(), loc.Pack.Str()))
		return nil
	}
	tree, err := snapshot.LoadTree(ctx, repo, id)
	if err != nil {
		if errors.Is(err, repository.ErrCorrupt) || errors.Is(err, repository.ErrFormat) || errors.Is(err, backend.ErrNotFound) {
			fn(dir, nil, err)
			return nil
		}
		return err
	}
	for i := range tree.Nodes {
		n := &tree.Nodes[i]
		p := path.Join(dir, n.Name)
		switch n.Type {
		case snapshot.TypeDir:
			if err := walk(ctx, repo, *n.Subtree, p, seen, fn); err != nil {
				return err
			}
		case snapshot.TypeFile:
			fn(p, n, nil)
		}
	}
	return nil
}

// readPack reads a whole pack back and verifies every blob in it.
func readPack(ctx context.Context, repo *repository.Repo, pid repository.ID, rep *Report) {
	data, err := backend.LoadAll(ctx, repo.Backend(), backend.Handle{Type: backend.PackFile, Name: pid.String()})
	if err != nil {
		rep.add(Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(), Message: fmt.Sprintf("read pack %s: %v", pid.Str(), err)})
		return
	}
	hashOK := repository.Hash(data) == pid
	blobs, err := repo.DecodePack(pid, data)
	if err != nil && hashOK {
		rep.add(Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(), Message: err.Error()})
		return
	}
	if err != nil {
		// The pack's bytes changed; use the index to find its blobs and
		// tell which ones are damaged.
		blobs = repo.Index().Packs()[pid]
		if len(blobs) == 0 {
			rep.add(Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(), Message: err.Error()})
			return
		}
	}
	corrupt := 0
	var buf []byte
	for _, b := range blobs {
		rep.BlobsChecked++
		end := int64(b.Offset) + int64(b.Length)
		var berr error
		if end > int64(len(data)) {
			berr = fmt.Errorf("blob extends past the end of the pack")
		} else {
			buf, berr = repo.OpenBlob(b.Type, b.ID, pid, b.Flags, b.RawLen, data[b.Offset:end], buf)
		}
		if berr != nil {
			corrupt++
			rep.CorruptBlobs++
			rep.add(Problem{Kind: "corrupt-blob", Object: "blob/" + b.ID.String(), Pack: pid.String(),
				Message: fmt.Sprintf("%s blob %s in pack %s: %v", b.Type, b.ID.Str(), pid.Str(), berr), id: b.ID, isBlob: true})
		}
	}
	if !hashOK && corrupt == 0 {
		rep.add(Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(),
			Message: fmt.Sprintf("pack %s: content does not match its name (damage outside the blobs, e.g. in the trailer)", pid.Str())})
	}
}
