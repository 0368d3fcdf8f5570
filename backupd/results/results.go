// Package results keeps the record of every daemon run (backup, verify,
// restore drill, scrub) in the repository itself, so "last success" times and
// outcomes survive restarts and are the same for every node that reads the
// repository. The daemon loads the store when it opens a repository,
// replays the records to its daemon.Observer (Restored, then the runs Load
// closed as interrupted), and pushes each run's record to the Observer when
// the run starts and ends. The collectors are that Observer: they are told,
// they never read this store or the repository, so a scrape never touches
// the repository.
//
// A run writes a "running" record when it starts and a final record when it
// ends. A running record with no final record (the process was killed) is
// turned into a failed record with reason "interrupted" when the store is
// next loaded. A final record that cannot be written (the store is
// unreachable when the run ends, often the reason it failed) is kept in
// memory, where Records and so the daemon's status see it, and written
// before the next record this Store writes; only if the process ends before
// that is its run closed as interrupted.
//
// Imports: repository and backend. Like all of the engine it never imports
// Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package results

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/repository"
)

// Kind of run.
type Kind string

// Run kinds.
const (
	Backup Kind = "backup"
	Verify Kind = "verify"
	Drill  Kind = "drill"
	Scrub  Kind = "scrub"
)

// Outcome of a run.
type Outcome string

// Outcomes.
const (
	Running Outcome = "running"
	Success Outcome = "success"
	Failure Outcome = "failure"
	// Partial is a backup that saved its snapshot, but without the files
	// it could not read (FilesUnreadable of them).
	Partial Outcome = "partial"
)

// Failure reasons: a short fixed set, fit for a metric label.
const (
	ReasonInterrupted = "interrupted" // the process died or was stopped mid-run
	ReasonRepository  = "repository"  // the repository could not be read or written
	ReasonSource      = "source"      // the source could not be read
	ReasonCorruption  = "corruption"  // damaged repository data
	ReasonMismatch    = "mismatch"    // restored content differs from the recorded hash
	ReasonRTO         = "rto"         // a drill succeeded but took longer than the RTO
	ReasonLocked      = "locked"      // the repository was locked by another writer
	// ReasonCrashed: the backup's child process (docs/DESIGN.md §3.6)
	// died by a signal or exited without a result (a panic, an OOM kill)
	// while the daemon kept running.
	ReasonCrashed = "crashed"
	ReasonOther   = "other"
)

// Reasons lists every reason, for pre-creating series.
var Reasons = []string{ReasonInterrupted, ReasonRepository, ReasonSource, ReasonCorruption, ReasonMismatch, ReasonRTO, ReasonLocked, ReasonCrashed, ReasonOther}

// Record is one run.
type Record struct {
	RunID      string    `json:"run_id"`
	Kind       Kind      `json:"kind"`
	Policy     string    `json:"policy,omitempty"`
	Repository string    `json:"repository"`
	Trigger    string    `json:"trigger"` // scheduled, manual, drill
	Hostname   string    `json:"hostname"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end,omitzero"`
	Outcome    Outcome   `json:"outcome"`
	Reason     string    `json:"reason,omitempty"`
	Error      string    `json:"error,omitempty"`

	Snapshot       string `json:"snapshot,omitempty"`
	FilesNew       uint64 `json:"files_new,omitempty"`
	FilesChanged   uint64 `json:"files_changed,omitempty"`
	FilesUnchanged uint64 `json:"files_unchanged,omitempty"`
	FilesSkipped   uint64 `json:"files_skipped,omitempty"`
	// FilesUnreadable counts files a backup could not read; its snapshot
	// lacks them (Outcome Partial).
	FilesUnreadable uint64  `json:"files_unreadable,omitempty"`
	BytesRead       uint64  `json:"bytes_read,omitempty"`
	BytesWritten    uint64  `json:"bytes_written,omitempty"`
	CPUSeconds      float64 `json:"cpu_seconds,omitempty"`
	MaxRSS          uint64  `json:"max_rss_bytes,omitempty"`
	ReadIOBytes     uint64  `json:"read_io_bytes,omitempty"`
	WriteIOBytes    uint64  `json:"write_io_bytes,omitempty"`

	// Drills.
	RTOSeconds      float64 `json:"rto_seconds,omitempty"`
	WithinRTO       bool    `json:"within_rto,omitempty"`
	FilesVerified   uint64  `json:"files_verified,omitempty"`
	MismatchedFiles uint64  `json:"mismatched_files,omitempty"`

	// Verify.
	BlobsChecked uint64  `json:"blobs_checked,omitempty"`
	BlobsCorrupt uint64  `json:"blobs_corrupt,omitempty"`
	Coverage     float64 `json:"coverage,omitempty"`
	Rotation     int     `json:"rotation,omitempty"` // which part of the read-back rotation ran

	// Scrub.
	SilentChanges uint64 `json:"silent_changes,omitempty"`
}

// Completed reports whether the run did its job: it succeeded, or, partial,
// saved its snapshot without some files.
func (r Record) Completed() bool { return r.Outcome == Success || r.Outcome == Partial }

// Duration of a finished run.
func (r Record) Duration() time.Duration { return r.End.Sub(r.Start) }

// fileType is the backend file type of records. Each Started or Finished
// call stores one record as its own sealed, unpacked object of this type
// (the JSON of a Record, see repository.Repo.SaveUnpacked); this package
// alone gives those objects their meaning.
const fileType = backend.ResultFile

// Saver stores sealed records; *repository.Repo implements it.
type Saver interface {
	SaveUnpacked(ctx context.Context, t backend.FileType, plain []byte) (repository.ID, error)
	LoadUnpacked(ctx context.Context, t backend.FileType, id repository.ID) ([]byte, error)
	Backend() backend.Backend
}

// Store is the records of one repository.
type Store struct {
	repo    Saver
	mu      sync.Mutex
	records []Record
	// ids of the stored objects per run, for compaction.
	objects map[string][]repository.ID
	// interrupted are the failure records Load wrote for runs that never
	// finished.
	interrupted []Record
	// unsaved are final records, in records already, whose write failed;
	// save writes them, oldest first, before its own.
	unsaved []Record
	// Unreadable counts records Load skipped because they were damaged.
	Unreadable int
}

// Load reads every record of the repository. Runs started under one of
// hostnames (the host names this daemon's runs carry: the machine's, and
// any configured host) that never finished are closed with a failure
// record; other hosts' running records are theirs to close. An unreadable record is skipped and counted in
// Unreadable: one damaged record must not stop the daemon.
func Load(ctx context.Context, repo Saver, hostnames []string, now time.Time) (*Store, error) {
	s := &Store{repo: repo, objects: map[string][]repository.ID{}}
	var names []string
	if err := repo.Backend().List(ctx, fileType, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list results: %w", err)
	}
	byRun := map[string][]Record{}
	for _, n := range names {
		id, err := repository.ParseID(n)
		if err != nil {
			continue
		}
		b, err := repo.LoadUnpacked(ctx, fileType, id)
		if errors.Is(err, backend.ErrNotFound) {
			continue
		}
		if errors.Is(err, repository.ErrCorrupt) {
			s.Unreadable++
			continue
		}
		if err != nil {
			return nil, err // LoadUnpacked names the result
		}
		var r Record
		if err := json.Unmarshal(b, &r); err != nil || r.RunID == "" {
			s.Unreadable++
			continue
		}
		byRun[r.RunID] = append(byRun[r.RunID], r)
		s.objects[r.RunID] = append(s.objects[r.RunID], id)
	}
	for _, recs := range byRun {
		var final *Record
		var start *Record
		for i := range recs {
			if recs[i].Outcome == Running {
				start = &recs[i]
			} else {
				final = &recs[i]
			}
		}
		switch {
		case final != nil:
			s.records = append(s.records, *final)
		case start != nil && slices.Contains(hostnames, start.Hostname):
			r := *start
			r.Outcome, r.Reason, r.End = Failure, ReasonInterrupted, now
			r.Error = "the run did not finish (the process was killed or the host went down)"
			if err := s.save(ctx, r); err != nil {
				return nil, err
			}
			s.interrupted = append(s.interrupted, r)
		}
	}
	sort.Slice(s.records, func(i, j int) bool { return s.records[i].End.Before(s.records[j].End) })
	return s, nil
}

// save writes the records left unsaved, then r. A final record that
// cannot be written is kept (in records, and in unsaved for the next save).
func (s *Store) save(ctx context.Context, r Record) error {
	if err := s.saveUnsaved(ctx); err != nil {
		if r.Outcome != Running {
			s.keepUnsaved(r)
		}
		return err
	}
	id, err := s.write(ctx, r)
	if err != nil {
		if r.Outcome != Running {
			s.keepUnsaved(r)
		}
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[r.RunID] = append(s.objects[r.RunID], id)
	if r.Outcome != Running {
		s.records = append(s.records, r)
	}
	return nil
}

func (s *Store) write(ctx context.Context, r Record) (repository.ID, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return repository.ID{}, err
	}
	return s.repo.SaveUnpacked(ctx, fileType, b)
}

func (s *Store) keepUnsaved(r Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, r)
	s.unsaved = append(s.unsaved, r)
}

// saveUnsaved writes the final records whose write failed, oldest first,
// and stops at the first that fails again.
func (s *Store) saveUnsaved(ctx context.Context) error {
	for {
		s.mu.Lock()
		if len(s.unsaved) == 0 {
			s.mu.Unlock()
			return nil
		}
		r := s.unsaved[0]
		s.mu.Unlock()
		id, err := s.write(ctx, r)
		if err != nil {
			return fmt.Errorf("write the record of run %s kept since its write failed: %w", r.RunID, err)
		}
		s.mu.Lock()
		s.objects[r.RunID] = append(s.objects[r.RunID], id)
		s.unsaved = s.unsaved[1:]
		s.mu.Unlock()
	}
}

// Unsaved returns how many final records are kept in memory only, their
// write having failed.
func (s *Store) Unsaved() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.unsaved)
}

// Started records that a run began.
func (s *Store) Started(ctx context.Context, r Record) error {
	r.Outcome = Running
	return s.save(ctx, r)
}

// Finished records a run's outcome. The record's End must be set.
func (s *Store) Finished(ctx context.Context, r Record) error {
	if r.Outcome == Running || r.Outcome == "" {
		return errors.New("results: a finished record needs an outcome")
	}
	return s.save(ctx, r)
}

// Interrupted returns the failure records Load wrote for runs that never
// finished, so that they are counted once.
func (s *Store) Interrupted() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.interrupted...)
}

// Records returns the finished records, oldest first.
func (s *Store) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.records...)
}

// Compact removes all but the newest keep finished records of each policy
// and kind, with their running records.
func (s *Store) Compact(ctx context.Context, keep int) error {
	s.mu.Lock()
	type key struct {
		k Kind
		p string
	}
	count := map[key]int{}
	var drop []string
	var kept []Record
	for i := len(s.records) - 1; i >= 0; i-- {
		r := s.records[i]
		k := key{r.Kind, r.Policy}
		count[k]++
		if count[k] > keep {
			drop = append(drop, r.RunID)
			continue
		}
		kept = append(kept, r)
	}
	for i, j := 0, len(kept)-1; i < j; i, j = i+1, j-1 {
		kept[i], kept[j] = kept[j], kept[i]
	}
	s.records = kept
	dropped := map[string]bool{}
	for _, run := range drop {
		dropped[run] = true
	}
	s.unsaved = slices.DeleteFunc(s.unsaved, func(r Record) bool { return dropped[r.RunID] })
	var ids []repository.ID
	for _, run := range drop {
		ids = append(ids, s.objects[run]...)
		delete(s.objects, run)
	}
	s.mu.Unlock()
	for _, id := range ids {
		if err := s.repo.Backend().Remove(ctx, backend.Handle{Type: fileType, Name: id.String()}); err != nil {
			return fmt.Errorf("compact results: %w", err)
		}
	}
	return nil
}
