package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
	"github.com/meshbackup/backupd/bench/workload"
)

// runResult is one backupd process's outcome.
type runResult struct {
	stdout, stderr string
	code           int
}

// runBin runs backupd with c's environment. Unlike cli.run it never calls
// into t, so goroutines may use it.
func (c *cli) runBin(args ...string) (runResult, error) {
	cmd := exec.Command(binary, args...)
	cmd.Env = c.env
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	res := runResult{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.code = -int(ws.Signal())
		} else {
			res.code = ee.ExitCode()
		}
	case err != nil:
		return res, err
	}
	return res, nil
}

// lockConflict reports whether a failed command was refused for a lock
// another process holds: exit 1 with the ErrLocked message. Nothing else
// is an acceptable failure in TestS3ConcurrentWritersAndPrune.
func lockConflict(r runResult) bool {
	return r.code == exitFailed && strings.Contains(r.stderr, "repository is locked")
}

// doneSnapshot is a snapshot a writer reported done, with the manifest of
// its source when it was taken.
type doneSnapshot struct {
	id, host string
	want     map[string]workload.Entry
}

// Two writers under different host names, each with its own source, back
// up into one bucket at once while a third process runs forget --prune
// (keep-last 2, no grace) over and over. Commands either succeed or are
// refused for a lock conflict, and are then retried (a bounded number of
// times); a backup never fails otherwise, no lock needs 'unlock'. At the
// end every snapshot reported done and not removed by forget is there and
// restores byte-exact against its source's manifest at the time, check
// --read-data passes, forget and prune really removed snapshots and packs,
// and no lock object is left in the bucket.
func TestS3ConcurrentWritersAndPrune(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	const (
		rounds   = 5
		keepLast = 2
		attempts = 40
	)
	srv := s3test.StartMinIO(t)
	c := s3CLI(t, srv, "mesh")
	c.mustRun("init")
	type writer struct {
		host string
		src  string
		opt  workload.Options
	}
	writers := []writer{
		{host: "node-a", opt: workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.03, Seed: 21}},
		{host: "node-b", opt: workload.Options{Proxies: 3, ConsulServers: 1, Scale: 0.03, Seed: 22}},
	}
	for i := range writers {
		writers[i].src = genVolume(t, writers[i].opt)
	}

	var (
		mu        sync.Mutex
		done      []doneSnapshot
		removed   = map[string]bool{} // short ids forget removed
		problems  []string
		conflicts = map[string]int{}
		deleted   int // packs prune deleted
		forgets   int // forget runs that removed snapshots
	)
	problem := func(format string, r runResult, args ...string) {
		mu.Lock()
		defer mu.Unlock()
		problems = append(problems, format+" "+strings.Join(args, " ")+": exit "+strconv.Itoa(r.code)+": "+r.stderr)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w.opt.Seed), 1))
			for round := range rounds {
				if round > 0 {
					if err := workload.Mutate(w.src, w.opt, 1); err != nil {
						problem("mutate", runResult{}, err.Error())
						return
					}
				}
				m, err := workload.Manifest(w.src)
				if err != nil {
					problem("manifest", runResult{}, err.Error())
					return
				}
				for k, v := range m {
					if v.Type == "socket" || v.Type == "other" {
						delete(m, k)
					}
				}
				for try := 0; ; try++ {
					r, err := c.runBin("backup", "--policy", "mesh", "--host", w.host, "--json", w.src)
					if err != nil {
						problem("run backup", r, err.Error())
						return
					}
					if r.code == 0 {
						var s summary
						if err := json.Unmarshal([]byte(r.stdout), &s); err != nil || s.SnapshotID == "" {
							problem("backup output", r, r.stdout)
							return
						}
						mu.Lock()
						done = append(done, doneSnapshot{id: s.SnapshotID, host: w.host, want: m})
						mu.Unlock()
						break
					}
					if !lockConflict(r) {
						problem("backup failed for a reason other than a lock conflict", r, w.host)
						return
					}
					mu.Lock()
					conflicts["backup"]++
					mu.Unlock()
					if try == attempts {
						problem("backup still refused for a lock after retries", r, w.host)
						return
					}
					time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
				}
			}
		}()
	}
	// forget runs parses forget --prune --json: the groups, then the
	// prune plan.
	forget := func() (runResult, error) {
		r, err := c.runBin("forget", "--keep-last", strconv.Itoa(keepLast), "--prune", "--grace", "0s", "--json")
		if err != nil || r.code != 0 {
			return r, err
		}
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		var groups []forgetGroupJSON
		var plan struct {
			Deleted int `json:"deleted"`
		}
		if err := dec.Decode(&groups); err != nil {
			return r, err
		}
		if err := dec.Decode(&plan); err != nil && !errors.Is(err, io.EOF) {
			return r, err
		}
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, g := range groups {
			for _, id := range g.Remove {
				removed[id] = true
				n++
			}
		}
		if n > 0 {
			forgets++
		}
		deleted += plan.Deleted
		return r, nil
	}
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		for ctx.Err() == nil {
			r, err := forget()
			switch {
			case err != nil:
				problem("forget output", r, err.Error())
				return
			case r.code == 0:
			case lockConflict(r):
				mu.Lock()
				conflicts["forget"]++
				mu.Unlock()
			default:
				problem("forget failed for a reason other than a lock conflict", r)
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
	}()
	wg.Wait()
	cancel()
	<-pruned
	// Once more, alone: removals and the deletion of what the last runs
	// left marked (grace 0: a pack marked by one prune goes at the next).
	for range 2 {
		if r, err := forget(); err != nil || r.code != 0 {
			t.Fatalf("final forget: %v exit %d: %s", err, r.code, r.stderr)
		}
	}
	for _, p := range problems {
		t.Error(p)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d snapshots done, %d removed by %d forget runs, %d packs deleted; lock conflicts retried: %v", len(done), len(removed), forgets, deleted, conflicts)
	if len(done) != rounds*len(writers) {
		t.Fatalf("%d snapshots done, want %d", len(done), rounds*len(writers))
	}
	if forgets == 0 || deleted == 0 {
		t.Fatalf("forget removed snapshots in %d runs and prune deleted %d packs: the test did not exercise prune", forgets, deleted)
	}
	// The snapshots there are exactly those done and not removed.
	snaps := c.s3Snapshots()
	there := map[string]bool{}
	for _, s := range snaps {
		there[s.ID] = true
	}
	kept := 0
	for _, d := range done {
		short := d.id[:8]
		switch {
		case removed[short] && there[d.id]:
			t.Errorf("snapshot %s was removed by forget and is still listed", short)
		case !removed[short] && !there[d.id]:
			t.Errorf("snapshot %s of %s reported done and never removed is gone", short, d.host)
		case !removed[short]:
			kept++
			target := filepath.Join(t.TempDir(), "restore")
			c.mustRun("restore", "--target", target, d.id)
			if diff := workload.Diff(d.want, manifest(t, target), true); len(diff) > 0 {
				t.Errorf("snapshot %s of %s restores differently:\n%s", short, d.host, strings.Join(diff, "\n"))
			}
		}
	}
	if len(snaps) != kept || kept != keepLast*len(writers) {
		t.Errorf("%d snapshots listed, %d kept of those done; want %d", len(snaps), kept, keepLast*len(writers))
	}
	c.mustRun("check", "--read-data")
	// No lock object is left: every process removed its own.
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(c.repo, "s3://"), "/")
	out, err := srv.Client().ListObjectsV2(t.Context(), &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: ptr(prefix + "/locks/")})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out.Contents {
		t.Errorf("lock object left: %s", *o.Key)
	}
}

func ptr[T any](v T) *T { return &v }
