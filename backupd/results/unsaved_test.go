package results_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/results"
)

// flaky is a Saver whose writes fail while down.
type flaky struct {
	*repository.Repo
	down atomic.Bool
}

func (f *flaky) SaveUnpacked(ctx context.Context, t backend.FileType, plain []byte) (repository.ID, error) {
	if f.down.Load() {
		return repository.ID{}, errors.New("store down")
	}
	return f.Repo.SaveUnpacked(ctx, t, plain)
}

// A run that ends while the store is down (its start was written): the
// final record cannot be written. It is kept, so the store's Records show
// it, and written before the next record once the store is back; a later
// Load then finds the run failed for its own reason, not interrupted.
func TestFinalRecordKeptWhileTheStoreIsDown(t *testing.T) {
	repo, _ := repotest.NewMem(t)
	ctx := t.Context()
	f := &flaky{Repo: repo}
	s, err := results.Load(ctx, f, []string{"h"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	failed := results.Record{RunID: "a", Kind: results.Backup, Policy: "p", Hostname: "h", Start: t0, End: t0.Add(time.Minute),
		Outcome: results.Failure, Reason: results.ReasonRepository}
	if err := s.Started(ctx, failed); err != nil {
		t.Fatal(err)
	}
	f.down.Store(true)
	if err := s.Finished(ctx, failed); err == nil {
		t.Fatal("Finished with the store down reported no error")
	}
	if recs := s.Records(); len(recs) != 1 || recs[0].RunID != "a" || s.Unsaved() != 1 {
		t.Fatalf("records while down: %+v, %d unsaved; want run a kept", recs, s.Unsaved())
	}
	// Still down at the next run's start: nothing is lost.
	next := results.Record{RunID: "b", Kind: results.Backup, Policy: "p", Hostname: "h", Start: t0.Add(2 * time.Minute), End: t0.Add(3 * time.Minute), Outcome: results.Success}
	if err := s.Started(ctx, next); err == nil {
		t.Fatal("Started with the store down reported no error")
	}
	f.down.Store(false)
	if err := s.Started(ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := s.Finished(ctx, next); err != nil {
		t.Fatal(err)
	}
	if s.Unsaved() != 0 || len(s.Records()) != 2 {
		t.Fatalf("after the store came back: %d unsaved, %d records", s.Unsaved(), len(s.Records()))
	}
	s2, err := results.Load(ctx, repo, []string{"h"}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	recs := s2.Records()
	if len(s2.Interrupted()) != 0 || len(recs) != 2 || recs[0].RunID != "a" || recs[0].Reason != results.ReasonRepository {
		t.Fatalf("after reload: %+v, %d interrupted; want run a failed with reason repository", recs, len(s2.Interrupted()))
	}
}
