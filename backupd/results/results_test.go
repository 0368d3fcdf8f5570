package results_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
	"github.com/meshbackup/backupd/backupd/results"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func TestRecordsSurviveReloadAndInterruptedRunsAreClosed(t *testing.T) {
	repo, be := repotest.NewMem(t)
	ctx := t.Context()
	s, err := results.Load(ctx, repo, []string{"h"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	done := results.Record{RunID: "a", Kind: results.Backup, Policy: "p", Hostname: "h", Start: t0, End: t0.Add(time.Minute), Outcome: results.Success}
	if err := s.Started(ctx, done); err != nil {
		t.Fatal(err)
	}
	if err := s.Finished(ctx, done); err != nil {
		t.Fatal(err)
	}
	// A run that started and never finished: the process died.
	if err := s.Started(ctx, results.Record{RunID: "b", Kind: results.Backup, Policy: "p", Hostname: "h", Start: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// Another host's run in progress is not ours to close.
	if err := s.Started(ctx, results.Record{RunID: "x", Kind: results.Backup, Policy: "p", Hostname: "other", Start: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// A damaged record is skipped, not fatal.
	if err := be.Save(ctx, backend.Handle{Type: backend.ResultFile, Name: repository.Hash([]byte("junk")).String()}, bytes.NewReader([]byte("junk"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Finished(ctx, results.Record{RunID: "c", Kind: results.Backup}); err == nil {
		t.Fatal("a record without an outcome was accepted")
	}
	s2, err := results.Load(ctx, repo, []string{"h"}, t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	recs := s2.Records()
	if len(recs) != 2 || recs[0].RunID != "a" || recs[1].RunID != "b" || recs[1].Reason != results.ReasonInterrupted || recs[1].Outcome != results.Failure {
		t.Fatalf("records after reload: %+v", recs)
	}
	if n := len(s2.Interrupted()); n != 1 || s2.Unreadable != 1 {
		t.Fatalf("%d interrupted runs reported (want 1), %d unreadable (want 1)", n, s2.Unreadable)
	}
	// Loading again does not count the interrupted run twice.
	s3, _ := results.Load(ctx, repo, []string{"h"}, t0.Add(3*time.Hour))
	if n := len(s3.Interrupted()); n != 0 || len(s3.Records()) != 2 {
		t.Fatalf("second reload: %d interrupted, %d records", n, len(s3.Records()))
	}
}

func TestCompactKeepsTheNewest(t *testing.T) {
	repo, _ := repotest.NewMem(t)
	ctx := t.Context()
	s, _ := results.Load(ctx, repo, []string{"h"}, t0)
	for i := range 10 {
		r := results.Record{RunID: string(rune('a' + i)), Kind: results.Drill, Policy: "p", Start: t0.Add(time.Duration(i) * time.Minute),
			End: t0.Add(time.Duration(i)*time.Minute + time.Second), Outcome: results.Success}
		_ = s.Started(ctx, r)
		_ = s.Finished(ctx, r)
	}
	if err := s.Compact(ctx, 3); err != nil {
		t.Fatal(err)
	}
	s2, _ := results.Load(ctx, repo, []string{"h"}, t0.Add(time.Hour))
	recs := s2.Records()
	if len(recs) != 3 || recs[2].RunID != "j" || len(s2.Interrupted()) != 0 {
		t.Fatalf("after compaction: %+v", recs)
	}
}
