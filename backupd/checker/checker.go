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
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sort"
	"sync"

	"golang.org/x/sync/errgroup"

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
	// Progress, if set, is called after each pack read back, with done
	// counting up by one per call. Calls are serialised but come from the
	// reading goroutines.
	Progress func(done, total int)
	// Reads bounds the packs read at once, for the trailers and for the
	// read-back: 8 by default, so that an object store's latency per
	// request (tens of milliseconds) is overlapped rather than summed.
	// The read-back holds up to Reads whole packs in memory (8 × the
	// 16 MiB default pack size is 128 MiB); a trailer read holds a few
	// KiB. The report does not depend on it.
	Reads int
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

// run is one pass of a check: what the earlier steps found, for the later
// ones.
type run struct {
	repo *repository.Repo
	opt  Options
	rep  *Report
	// indexed holds, per pack, every index entry naming it; sizes the
	// packs the backend lists; badPack those missing or unreadable.
	indexed map[repository.ID][]repository.PackBlob
	sizes   map[repository.ID]int64
	badPack map[repository.ID]bool
	// badIndex is set when an index file could not be read.
	badIndex bool
}

func check(ctx context.Context, repo *repository.Repo, opt Options) (*Report, error) {
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Reads <= 0 {
		opt.Reads = 8
	}
	if err := validSubset(opt); err != nil {
		return nil, err
	}
	c := &run{repo: repo, opt: opt, rep: &Report{}, badPack: map[repository.ID]bool{}}
	for _, step := range []func(context.Context) error{c.loadDamage, c.loadIndex, c.listPacks, c.checkPacks, c.readBack, c.checkSnapshots} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return c.rep, nil
}

func validSubset(opt Options) error {
	if opt.SubsetT < 0 || opt.SubsetN < 0 || opt.SubsetT > 0 && (opt.SubsetN < 1 || opt.SubsetN > opt.SubsetT) {
		return fmt.Errorf("check: subset %d/%d: want n/t with 1 <= n <= t", opt.SubsetN, opt.SubsetT)
	}
	return nil
}

// loadDamage reads the damage recorded by earlier checks, before the index
// is loaded (it marks recorded copies).
func (c *run) loadDamage(ctx context.Context) error {
	var err error
	c.rep.damage, err = loadDamage(ctx, c.repo)
	return err
}

// loadIndex reads every index file not superseded by another into the
// repository's index and notes which packs they name. An unreadable index
// file is a problem; one deleted meanwhile (by a prune) is not.
func (c *run) loadIndex(ctx context.Context) error {
	files, err := c.repo.ReadIndexFiles(ctx)
	if err != nil {
		return err
	}
	superseded := supersededIndexes(files)
	c.indexed = map[repository.ID][]repository.PackBlob{}
	for _, f := range files {
		if f.Err != nil {
			if errors.Is(f.Err, backend.ErrNotFound) {
				continue
			}
			if superseded[f.ID] {
				continue // a repair index that was interrupted before removing it
			}
			c.badIndex = true
			c.rep.add(Problem{Kind: "bad-index", Object: "index/" + f.Name, Message: f.Err.Error() + "; its packs are intact: run 'backupd repair index' to rebuild the index from them"})
			continue
		}
		if superseded[f.ID] {
			continue
		}
		for _, p := range f.File.Packs {
			c.repo.Index().AddPack(p.ID, p.Blobs)
			c.indexed[p.ID] = append(c.indexed[p.ID], p.Blobs...)
		}
	}
	return nil
}

// supersededIndexes returns the index files another one replaces.
func supersededIndexes(files []repository.LoadedIndex) map[repository.ID]bool {
	superseded := map[repository.ID]bool{}
	for _, f := range files {
		if f.File != nil {
			for _, s := range f.File.Supersedes {
				superseded[s] = true
			}
		}
	}
	return superseded
}

// listPacks lists the packs the backend holds, with their sizes.
func (c *run) listPacks(ctx context.Context) error {
	c.sizes = map[repository.ID]int64{}
	if err := c.repo.Backend().List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		id, err := repository.ParseID(fi.Name)
		if err != nil {
			c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf("data/%s: not a pack name", fi.Name))
			return nil
		}
		c.sizes[id] = fi.Size
		return nil
	}); err != nil {
		return fmt.Errorf("check: list packs: %w", err)
	}
	c.rep.Packs = len(c.sizes)
	return nil
}

// checkPacks finds indexed packs that are missing, and reads every pack's
// trailer to compare it with the index, up to Options.Reads at once. The
// findings are merged in pack order, as a sequential check would find them.
func (c *run) checkPacks(ctx context.Context) error {
	for _, pid := range repository.SortedIDs(c.indexed) {
		if _, ok := c.sizes[pid]; !ok {
			c.rep.add(Problem{Kind: "missing-pack", Object: "data/" + pid.String(), Message: fmt.Sprintf("pack %s is indexed but missing", pid.Str())})
			c.badPack[pid] = true
		}
	}
	pids := repository.SortedIDs(c.sizes)
	results := make([]trailerResult, len(pids))
	if err := forEach(ctx, c.opt.Reads, len(pids), func(ctx context.Context, i int) {
		results[i] = c.checkTrailer(ctx, pids[i])
	}); err != nil {
		return err
	}
	for i, res := range results {
		if res.bad {
			c.badPack[pids[i]] = true
		}
		if res.unindexed {
			c.rep.UnindexedPacks++
			c.rep.Warnings = append(c.rep.Warnings, res.warning)
		}
		for _, p := range res.problems {
			c.rep.add(p)
		}
	}
	return nil
}

// forEach calls fn for 0 <= i < n on up to limit goroutines, and returns
// ctx's error if it ended before every call was made.
func forEach(ctx context.Context, limit, n int, fn func(ctx context.Context, i int)) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	for i := range n {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			fn(gctx, i)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// trailerResult is what checkTrailer found about one pack.
type trailerResult struct {
	problems  []Problem
	bad       bool // the trailer is unreadable
	unindexed bool // no index names the pack
	warning   string
}

// checkTrailer reads the trailer of pack pid and compares it with the
// pack's index entries; a pack no index names is a warning. It runs on a
// reading goroutine and only reads the run's state.
func (c *run) checkTrailer(ctx context.Context, pid repository.ID) trailerResult {
	var res trailerResult
	trailer, err := c.repo.ReadPackTrailer(ctx, pid, c.sizes[pid])
	if err != nil {
		res.problems = append(res.problems, Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(), Message: err.Error()})
		res.bad = true
		return res
	}
	want, ok := c.indexed[pid]
	if !ok {
		res.unindexed = true
		res.warning = unindexedWarning(pid, c.badIndex, c.rep.damage)
		return res
	}
	inTrailer := map[repository.ID]repository.PackBlob{}
	for _, b := range trailer {
		inTrailer[b.ID] = b
	}
	for _, b := range want {
		bid := b.ID
		t, ok := inTrailer[bid]
		if !ok || t.Offset != b.Offset || t.Length != b.Length || t.Type != b.Type || t.RawLen != b.RawLen || t.Flags != b.Flags {
			res.problems = append(res.problems, Problem{Kind: "index-mismatch", Object: "data/" + pid.String(), Pack: pid.String(),
				Message: fmt.Sprintf("index entry of blob %s disagrees with the trailer of pack %s", bid.Str(), pid.Str()),
				id:      bid, isBlob: true})
		}
	}
	return res
}

// readBack reads back the packs the options select (all, or a subset), up
// to Options.Reads at once. The findings are merged in pack order, as a
// sequential check would find them.
func (c *run) readBack(ctx context.Context) error {
	if !c.opt.ReadData && c.opt.SubsetT <= 0 {
		return nil
	}
	var sel []repository.ID
	for _, pid := range repository.SortedIDs(c.sizes) {
		if c.opt.ReadData || int(pid[0])%c.opt.SubsetT == c.opt.SubsetN-1 {
			sel = append(sel, pid)
		}
	}
	results := make([]packResult, len(sel))
	var mu sync.Mutex
	done := 0
	if err := forEach(ctx, c.opt.Reads, len(sel), func(ctx context.Context, i int) {
		results[i] = readPack(ctx, c.repo, sel[i])
		if c.opt.Progress != nil {
			mu.Lock()
			defer mu.Unlock()
			done++
			c.opt.Progress(done, len(sel))
		}
	}); err != nil {
		return err
	}
	for _, res := range results {
		c.rep.PacksRead++
		c.rep.BlobsChecked += res.blobsChecked
		c.rep.CorruptBlobs += res.corruptBlobs
		for _, p := range res.problems {
			c.rep.add(p)
		}
	}
	return nil
}

// checkSnapshots decodes every snapshot, walks its trees, and reports the
// files that depend on missing or damaged data.
func (c *run) checkSnapshots(ctx context.Context) error {
	snaps, bad, err := snapshot.LoadAll(ctx, c.repo)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	c.rep.Snapshots = len(snaps) + len(bad)
	for id, err := range bad {
		c.rep.add(Problem{Kind: "bad-snapshot", Object: "snapshots/" + id.String(), Message: err.Error()})
	}
	isDamaged := c.damagedBlobs()
	seenTree := map[repository.ID]bool{}
	missing := map[repository.ID]bool{}
	affected := map[Affected]bool{}
	for _, sn := range snaps {
		walkErr := walk(ctx, c.repo, sn.Tree, "/", seenTree, func(p string, n *snapshot.Node, treeErr error) {
			if c.fileHit(p, n, treeErr, isDamaged, missing) {
				affected[Affected{Snapshot: sn.ID.Str(), Policy: sn.Policy, Path: p}] = true
			}
		})
		if walkErr != nil {
			return walkErr
		}
	}
	c.rep.Affected = sortedAffected(affected)
	return nil
}

// damagedBlobs returns whether a blob is damaged: found so by the problems
// so far, or in a missing or unreadable pack.
func (c *run) damagedBlobs() func(repository.ID) bool {
	damaged := map[repository.ID]bool{}
	for _, p := range c.rep.Problems {
		if p.isBlob {
			damaged[p.id] = true
		}
	}
	return func(id repository.ID) bool {
		if damaged[id] {
			return true
		}
		loc, ok := c.repo.Index().Lookup(id)
		return ok && c.badPack[loc.Pack]
	}
}

// fileHit reports whether the file at p (node n), or the tree that should
// have held it (treeErr), depends on missing or damaged data, and reports
// unreadable trees and blobs no index names (each once, by missing).
func (c *run) fileHit(p string, n *snapshot.Node, treeErr error, isDamaged func(repository.ID) bool, missing map[repository.ID]bool) bool {
	if treeErr != nil {
		prob := Problem{Kind: "bad-tree", Object: p, Message: treeErr.Error()}
		var ce *repository.CorruptError
		if errors.As(treeErr, &ce) && !ce.Pack.IsNull() {
			prob.Pack = ce.Pack.String()
			prob.id, prob.isBlob = ce.ID, true
		}
		c.rep.add(prob)
		return true
	}
	hit := false
	for _, id := range n.Content {
		if !c.repo.Index().Has(id) {
			hit = true
			if !missing[id] {
				missing[id] = true
				c.rep.add(blobProblem(c.repo, id, p))
			}
		} else if isDamaged(id) {
			hit = true
		}
	}
	return hit
}

// sortedAffected lists the affected files by snapshot, then path.
func sortedAffected(affected map[Affected]bool) []Affected {
	var list []Affected
	for a := range affected {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.Snapshot != b.Snapshot {
			return a.Snapshot < b.Snapshot
		}
		return a.Path < b.Path
	})
	return list
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
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Whatever made the tree unreadable, it is reported with the
		// directory it holds, and the check goes on.
		fn(dir, nil, err)
		return nil
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

// packResult is what readPack found in one pack.
type packResult struct {
	problems     []Problem
	blobsChecked int
	corruptBlobs int
}

// readPack reads a whole pack back and verifies every blob in it. The pack
// is checked against its name inside the Load (repository.LoadPack), so a
// retrying backend fetches it again when the bytes that arrived were bad;
// a pack damaged at rest is then examined blob by blob.
func readPack(ctx context.Context, repo *repository.Repo, pid repository.ID) packResult {
	var res packResult
	data, hashOK, err := repo.LoadPack(ctx, pid)
	if err != nil {
		res.problems = append(res.problems, Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(), Message: err.Error()})
		return res
	}
	blobs, err := repo.DecodePack(pid, data)
	if err != nil && hashOK {
		res.problems = append(res.problems, Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(), Message: err.Error()})
		return res
	}
	if err != nil {
		// The pack's bytes changed; use the index to find its blobs and
		// tell which ones are damaged.
		// Sorted by offset: the index's order is a map's, and the
		// problems must come out the same in every run.
		blobs = repo.Index().Packs()[pid]
		slices.SortFunc(blobs, func(a, b repository.PackBlob) int { return cmp.Compare(a.Offset, b.Offset) })
		if len(blobs) == 0 {
			res.problems = append(res.problems, Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(), Message: err.Error()})
			return res
		}
	}
	var buf []byte
	for _, b := range blobs {
		res.blobsChecked++
		end := int64(b.Offset) + int64(b.Length)
		var berr error
		if end > int64(len(data)) {
			berr = fmt.Errorf("blob extends past the end of the pack")
		} else {
			buf, berr = repo.OpenBlob(b.Type, b.ID, pid, b.Flags, b.RawLen, data[b.Offset:end], buf)
		}
		if berr != nil {
			res.corruptBlobs++
			res.problems = append(res.problems, Problem{Kind: "corrupt-blob", Object: "blob/" + b.ID.String(), Pack: pid.String(),
				Message: fmt.Sprintf("%s blob %s in pack %s: %v", b.Type, b.ID.Str(), pid.Str(), berr), id: b.ID, isBlob: true})
		}
	}
	if !hashOK && res.corruptBlobs == 0 {
		res.problems = append(res.problems, Problem{Kind: "corrupt-pack", Object: "data/" + pid.String(),
			Message: fmt.Sprintf("pack %s: content does not match its name (damage outside the blobs, e.g. in the trailer)", pid.Str())})
	}
	return res
}
