package archiver

import (
	"context"
	"slices"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/snapshot"
)

// finishDir waits for a directory's entries and stores its tree. A tree
// equal to the parent's, node for node, is the parent's tree blob: it is
// neither encoded nor looked up again.
func (a *Archiver) finishDir(ctx context.Context, scan *sourceScan, l *listing, res *dirResult, entries []entry, parent *snapshot.Tree, parentID *repository.ID) error {
	tree, complete, err := collectTree(ctx, entries)
	if err != nil {
		return err
	}
	if complete {
		sum, err := scan.waitSum(ctx, l, nil)
		if err != nil {
			return err
		}
		if sum != nil && sum.ok {
			res.digest = &sum.digest
		}
	}
	id, err := a.storeTree(ctx, tree, parent, parentID)
	if err != nil {
		return err
	}
	res.id = id
	close(res.done)
	return nil
}

// collectTree waits for each entry and returns the directory's tree;
// complete means every entry below is in it with a digest.
func collectTree(ctx context.Context, entries []entry) (tree *snapshot.Tree, complete bool, err error) {
	tree = &snapshot.Tree{Nodes: make([]snapshot.Node, 0, len(entries))}
	complete = true
	for _, e := range entries {
		switch {
		case e.file != nil:
			if err := waitFor(ctx, e.file.done); err != nil {
				return nil, false, err
			}
			if e.file.skip {
				complete = false
				continue
			}
			tree.Nodes = append(tree.Nodes, e.file.node)
			// No digest over a file taken partly unread: the next backup
			// must walk here to count it towards its full read.
			complete = complete && e.file.node.TailRuns == 0
		case e.dir != nil:
			if err := waitFor(ctx, e.dir.done); err != nil {
				return nil, false, err
			}
			n := dirNode(e)
			complete = complete && n.Digest != nil
			tree.Nodes = append(tree.Nodes, n)
		default:
			tree.Nodes = append(tree.Nodes, e.node)
			complete = complete && e.node.TailRuns == 0
		}
	}
	return tree, complete, nil
}

func waitFor(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dirNode is the node of a subdirectory whose tree is done.
func dirNode(e entry) snapshot.Node {
	n := e.node
	n.Type = snapshot.TypeDir
	id := e.dir.id
	n.Subtree = &id
	n.Digest = e.dir.digest
	return n
}

// storeTree returns the id of tree: the parent's if they are equal and the
// parent's is still indexed, else that of the tree stored now.
func (a *Archiver) storeTree(ctx context.Context, tree, parent *snapshot.Tree, parentID *repository.ID) (repository.ID, error) {
	if parent != nil && parentID != nil && slices.EqualFunc(tree.Nodes, parent.Nodes, sameNode) && a.repo.Index().Has(*parentID) {
		return *parentID, nil
	}
	b, err := tree.Encode()
	if err != nil {
		return repository.ID{}, err
	}
	id := a.repo.TreeID(b)
	stored, n, err := a.repo.SaveBlob(ctx, repository.TreeBlob, id, b)
	if err != nil {
		return repository.ID{}, err
	}
	if stored {
		a.Stats.BytesWritten.Add(uint64(n))
		a.Stats.BlobsWritten.Add(1)
	}
	return id, nil
}

// sameNode reports whether two nodes encode identically.
func sameNode(x, y snapshot.Node) bool {
	return x.Name == y.Name && x.Type == y.Type && x.Mode == y.Mode && x.UID == y.UID && x.GID == y.GID &&
		x.Size == y.Size && x.MtimeNS == y.MtimeNS && x.CtimeNS == y.CtimeNS && x.Inode == y.Inode &&
		x.Target == y.Target && x.TailRuns == y.TailRuns && slices.Equal(x.Content, y.Content) &&
		sameID(x.Hash, y.Hash) && sameID(x.Subtree, y.Subtree) && sameID(x.Digest, y.Digest)
}

func sameID(x, y *repository.ID) bool {
	return x == y || (x != nil && y != nil && *x == *y)
}
