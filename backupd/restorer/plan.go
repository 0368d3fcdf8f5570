package restorer

import (
	"context"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// plan numbers the files of a snapshot in the order walk queues them, and
// holds the prefetcher that reads their chunks ahead in that order.
//
// Invariant: walk gives a file the number plan gave it. Both visit trees
// depth first in node order; walk adds the count of a subtree it skips
// (its directory could not be made, its tree not loaded), and files under
// a tree the plan could not load get no number (-1: read chunk by chunk).
type plan struct {
	pf *repository.Prefetcher
	// files is the number of files under each tree the plan loaded (a
	// tree is content-addressed: the same id, the same subtree).
	files map[repository.ID]int
	next  int // the number walk gives its next file
	total int // files planned
}

// newPlan walks the trees of the snapshot and adds every file's chunks to
// a prefetcher, not started.
func (r *Restorer) newPlan(ctx context.Context, tree repository.ID) (*plan, error) {
	pl := &plan{
		pf:    r.repo.NewPrefetcher(repository.PrefetchOptions{Reads: r.opt.Reads, Budget: r.opt.ReadAhead}),
		files: map[repository.ID]int{},
	}
	var err error
	if pl.total, err = pl.add(ctx, r.repo, tree); err != nil {
		return nil, err
	}
	return pl, nil
}

// add plans the files under tree and returns how many there are. A tree
// that cannot be loaded holds none (walk reports it).
func (pl *plan) add(ctx context.Context, repo *repository.Repo, id repository.ID) (int, error) {
	tree, err := snapshot.LoadTree(ctx, repo, id)
	if err != nil {
		return 0, ctx.Err()
	}
	n := 0
	for _, node := range tree.Nodes {
		switch node.Type {
		case snapshot.TypeDir:
			k, err := pl.add(ctx, repo, *node.Subtree)
			if err != nil {
				return 0, err
			}
			n += k
		case snapshot.TypeFile:
			pl.pf.AddFile(node.Content)
			n++
		}
	}
	pl.files[id] = n
	return n, nil
}

// tree reports whether the plan loaded tree: whether its files are
// numbered. pl may be nil.
func (pl *plan) tree(id repository.ID) bool {
	if pl == nil {
		return false
	}
	_, ok := pl.files[id]
	return ok
}

// skip passes over the numbers of the files under a subtree walk does not
// enter.
func (pl *plan) skip(id repository.ID) {
	if pl != nil {
		pl.next += pl.files[id]
	}
}

// number returns the next file's number.
func (pl *plan) number() int {
	n := pl.next
	pl.next++
	return n
}
