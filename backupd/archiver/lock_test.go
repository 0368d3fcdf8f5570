package archiver

import (
	"errors"
	"testing"
	"time"

	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/backupd/repotest"
)

func newTestArchiver(t *testing.T, r *repository.Repo, policy string) *Archiver {
	t.Helper()
	a, err := New(r, Options{Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestOverlappingBackupIsRefused(t *testing.T) {
	r, be := repotest.NewMem(t)
	ctx := t.Context()
	a, err := newTestArchiver(t, r, "p1").lock(ctx, "/src")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Unlock()
	_, err = newTestArchiver(t, repotest.Reopen(t, be, repository.Options{}), "p1").lock(ctx, "/src")
	var le *repository.LockError
	if !errors.Is(err, ErrOverlap) || !errors.As(err, &le) || le.Holder.Policy != "p1" {
		t.Fatalf("want ErrOverlap naming the holder, got %v", err)
	}
	// Another policy, or another source, runs beside it.
	for _, tc := range []struct{ policy, source string }{{"p2", "/src"}, {"p1", "/other"}} {
		l, err := newTestArchiver(t, r, tc.policy).lock(ctx, tc.source)
		if err != nil {
			t.Fatalf("policy %s, source %s: %v", tc.policy, tc.source, err)
		}
		_ = l.Unlock()
	}
}

// Of two backups that both wrote their locks, exactly one yields: the later
// one, or at the same time the one of the larger owner.
func TestOverlapRuleYieldsExactlyOne(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	lock := func(owner string, at time.Time) repository.LockInfo {
		return repository.LockInfo{Hostname: "h", Policy: "p", Source: "/s", Owner: owner, Acquired: at}
	}
	for _, tc := range []struct {
		name string
		a, b repository.LockInfo
	}{
		{"earlier first", lock("b", t0), lock("a", t0.Add(time.Second))},
		{"same time", lock("a", t0), lock("b", t0)},
	} {
		if !overlaps(tc.a, tc.b) || overlaps(tc.b, tc.a) {
			t.Errorf("%s: b must yield to a, and a must not yield", tc.name)
		}
	}
	mine := lock("b", t0.Add(time.Second))
	for name, held := range map[string]repository.LockInfo{
		"own lock":       lock("b", t0),
		"other host":     {Hostname: "g", Policy: "p", Source: "/s", Owner: "a", Acquired: t0},
		"other policy":   {Hostname: "h", Policy: "q", Source: "/s", Owner: "a", Acquired: t0},
		"other source":   {Hostname: "h", Policy: "p", Source: "/t", Owner: "a", Acquired: t0},
		"exclusive lock": {Exclusive: true, Hostname: "h", Policy: "p", Source: "/s", Owner: "a", Acquired: t0},
	} {
		if overlaps(held, mine) {
			t.Errorf("%s: counted as an overlapping backup", name)
		}
	}
}
