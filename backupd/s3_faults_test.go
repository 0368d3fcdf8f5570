package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/retry"
	"github.com/meshbackup/backupd/backupd/backend/s3/s3test"
	"github.com/meshbackup/backupd/backupd/faultpoint"
	"github.com/meshbackup/backupd/backupd/repository"
	"github.com/meshbackup/backupd/bench/workload"
)

// Fault tests of object storage (docs/DESIGN.md §8, scenario 7 and the
// kill mid-multipart scenario), driving the commands against a real MinIO.

// s3CLI returns a cli on a new bucket of srv under prefix, reached as the
// AWS conventions say. The AWS variables are set in this process too (the
// SDK of the in-process calls reads them), so the test must not be
// parallel.
func s3CLI(t *testing.T, srv *s3test.Server, prefix string) *cli {
	t.Helper()
	id, secret := srv.Credentials()
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": srv.Endpoint(), "AWS_REGION": s3test.Region,
		"AWS_ACCESS_KEY_ID": id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": "",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
		"AWS_ENDPOINT_URL_S3": "",
	} {
		t.Setenv(k, v)
	}
	c := newCLI(t)
	c.repo = "s3://" + srv.NewBucket(t) + "/" + prefix
	c.env = append(c.env, "BACKUPD_REPOSITORY="+c.repo)
	return c
}

// retryCounter records the retries of the retry layer (its OnRetry hook).
type retryCounter struct {
	mu sync.Mutex
	// attempts[op] are the failed attempts' numbers, one per retry.
	attempts map[string][]int
}

func (r *retryCounter) onRetry(op string, attempt int, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.attempts == nil {
		r.attempts = make(map[string][]int)
	}
	r.attempts[op] = append(r.attempts[op], attempt)
}

func (r *retryCounter) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.attempts {
		n += len(a)
	}
	return n
}

// maxAttempt returns the highest attempt number retried, by op.
func (r *retryCounter) maxAttempt() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int)
	for op, a := range r.attempts {
		m[op] = slices.Max(a)
	}
	return m
}

// firstRead matches a GET of an object's range the first time it is asked
// for, never again. Listings are left out: S3 sends no checksum of a
// listing, so a byte flipped in one cannot be told by the client (TLS is
// what guards them).
func firstRead() func(*http.Request) bool {
	var mu sync.Mutex
	seen := make(map[string]bool)
	return func(r *http.Request) bool {
		if r.Method != http.MethodGet || r.URL.Query().Has("list-type") || r.URL.Query().Has("uploads") {
			return false
		}
		k := r.URL.Path + " " + r.Header.Get("Range")
		mu.Lock()
		defer mu.Unlock()
		first := !seen[k]
		seen[k] = true
		return first
	}
}

// callOut runs fn in-process and returns what it printed (stdout and
// stderr) and its error.
func callOut[O any](c *cli, fn func(context.Context, O, *globalOptions, []string) error, opts O, args ...string) (string, error) {
	c.t.Helper()
	g, out, errOut := c.globals(false)
	err := fn(c.t.Context(), opts, g, args)
	return out.String() + errOut.String(), err
}

// packsOf lists the pack names of c's repository, opened in this process.
func (c *cli) packsOf() []string {
	c.t.Helper()
	r := c.openS3Repo()
	var names []string
	if err := r.Backend().List(c.t.Context(), backend.PackFile, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		c.t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// Scenario 7: slow and flaky object storage, through a fault-injecting
// transport in front of a real MinIO. Backup and restore run with the
// faults on; restore is byte-exact and check --read-data clean; every
// fault that fails a request is retried, and no operation more often than
// the retry layer's bound; bytes flipped on every read of one pack are
// never accepted: restore fails naming the damage and writes no bad
// content, check reports it, and once the flipping stops both succeed.
func TestS3FlakyStorage(t *testing.T) {
	start := time.Now()
	srv := s3test.StartMinIO(t)
	src := genVolume(t, workload.Options{Proxies: 2, Scale: 0.02, Seed: 11})
	want := manifest(t, src)
	get := func(r *http.Request) bool { return r.Method == http.MethodGet }
	for _, tc := range []struct {
		name  string
		rules []s3test.Rule
		// failing are the kinds that fail the request they hit: each
		// must be retried (latency does not fail one).
		failing []s3test.FaultKind
	}{
		{"latency", []s3test.Rule{
			{Kind: s3test.Latency, Probability: 1, Latency: 20 * time.Millisecond},
			{Kind: s3test.Latency, Probability: 0.5, Latency: 30 * time.Millisecond},
		}, nil},
		{"500, 503 and SlowDown", []s3test.Rule{
			{Kind: s3test.Status500, Probability: 0.05},
			{Kind: s3test.Status503, Probability: 0.05},
			{Kind: s3test.SlowDown, Probability: 0.05},
		}, []s3test.FaultKind{s3test.Status500, s3test.Status503, s3test.SlowDown}},
		// After the first byte: every GET answer is longer, so each
		// injection fails its request.
		{"connection reset mid-body", []s3test.Rule{{Kind: s3test.Reset, Match: get, Probability: 0.15, AfterBytes: 1}}, []s3test.FaultKind{s3test.Reset}},
		{"truncated body", []s3test.Rule{{Kind: s3test.Truncate, Match: get, Probability: 0.15, AfterBytes: 1}}, []s3test.FaultKind{s3test.Truncate}},
		// Flipped in transit: a range is eligible at its first read only,
		// else a blob read three times in a row with flips (the retry
		// layer's bound: two re-fetches) is rightly refused, at 0.15³
		// per read.
		// Every flip in an object is caught (by the SDK's checksum of a
		// whole object, the repository's hashes of a range) and the
		// object fetched again.
		{"flipped bytes", []s3test.Rule{{Kind: s3test.FlipResponse, Match: firstRead(), Probability: 0.15, AfterBytes: 7}}, []s3test.FaultKind{s3test.FlipResponse}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s3CLI(t, srv, "flaky")
			ft := s3test.NewFaultTransport(uint64(len(tc.name)))
			var retries retryCounter
			c.hooks = testHooks{s3Transport: ft.Wrap, onRetry: retries.onRetry, packSize: 512 << 10}
			c.init()
			ft.SetRules(tc.rules...)
			s := c.backup(src)
			target := filepath.Join(t.TempDir(), "restore")
			c.restore(restoreOptions{Target: target}, s.SnapshotID)
			injected := ft.Counts()
			ft.SetRules()
			if d := workload.Diff(want, manifest(t, target), true); len(d) > 0 {
				t.Fatalf("restore under %s differs:\n%s", tc.name, strings.Join(d, "\n"))
			}
			c.check(checkOptions{ReadData: true})
			t.Logf("injected %v; retries %v", injected, retries.attempts)
			sum := 0
			for k, n := range injected {
				if k != s3test.Latency {
					sum += n
				}
			}
			if len(tc.rules) > 0 && tc.rules[0].Kind != s3test.Latency && sum == 0 {
				t.Fatalf("no %s injected: the test tests nothing", tc.name)
			}
			failing := 0
			for _, k := range tc.failing {
				failing += injected[k]
			}
			if got := retries.total(); got < failing {
				t.Errorf("%d retries for %d injected failures (%v): a failure was not retried, or not counted", got, failing, injected)
			}
			if tc.failing == nil && sum > 0 && retries.total() == 0 {
				t.Errorf("%d faults injected (%v), no retry counted", sum, injected)
			}
			for op, n := range retries.maxAttempt() {
				bound := retry.DefaultMaxAttempts - 1
				if op == retry.OpLoad {
					bound += retry.DefaultIntegrityRefetches
				}
				if n > bound {
					t.Errorf("%s retried after attempt %d, beyond the bound of %d", op, n, bound)
				}
			}
		})
	}

	t.Run("flipped on every read of one pack", func(t *testing.T) {
		c := s3CLI(t, srv, "flipped")
		ft := s3test.NewFaultTransport(5)
		var retries retryCounter
		c.hooks = testHooks{s3Transport: ft.Wrap, onRetry: retries.onRetry, packSize: 512 << 10}
		c.init()
		s := c.backup(src)
		packs := c.packsOf()
		if len(packs) < 2 {
			t.Fatalf("%d packs: want several, so that one is damaged and others are not", len(packs))
		}
		// The largest pack holds file data (trees are small).
		victim := packs[0]
		r := c.openS3Repo()
		var biggest int64
		for _, p := range packs {
			fi, err := r.Backend().Stat(t.Context(), backend.Handle{Type: backend.PackFile, Name: p})
			if err != nil {
				t.Fatal(err)
			}
			if fi.Size > biggest {
				biggest, victim = fi.Size, p
			}
		}
		ft.SetRules(s3test.Rule{Kind: s3test.FlipResponse, Probability: 1, AfterBytes: 40,
			Match: func(r *http.Request) bool {
				return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+victim)
			}})

		target := filepath.Join(t.TempDir(), "restore")
		out, err := callOut(c, runRestore, restoreOptions{Target: target}, s.SnapshotID)
		if err == nil || exitCode(err) != exitCorrupt {
			t.Fatalf("restore with a pack flipped on every read: %v (exit %d), want exit %d\n%s", err, exitCode(err), exitCorrupt, out)
		}
		if ft.Count(s3test.FlipResponse) < 1+retry.DefaultIntegrityRefetches {
			t.Errorf("the pack was read %d times, want it re-fetched %d times before giving up", ft.Count(s3test.FlipResponse), retry.DefaultIntegrityRefetches)
		}
		msg := err.Error() + out
		if !strings.Contains(msg, "damaged") && !strings.Contains(msg, "corrupt") {
			t.Errorf("restore's error does not name the damage: %s", msg)
		}
		got := manifest(t, target)
		bad := 0
		for name, e := range got {
			if w, ok := want[name]; ok && e.Type == "file" && e.Hash != w.Hash {
				bad++
				t.Errorf("restore wrote %s with content that differs from the source", name)
			}
		}
		missing := 0
		for name, w := range want {
			if _, ok := got[name]; !ok && w.Type == "file" {
				missing++
			}
		}
		if missing == 0 || !strings.Contains(msg, "file") {
			t.Errorf("%d files left out; want the files of the damaged pack left out and named:\n%s", missing, msg)
		}

		out, err = callOut(c, runCheck, checkOptions{ReadData: true})
		if exitCode(err) != exitCorrupt || !strings.Contains(err.Error()+out, victim[:8]) {
			t.Errorf("check --read-data with the pack flipped in transit: %v (exit %d), want exit 3 naming pack %s\n%s", err, exitCode(err), victim[:8], out)
		}

		ft.SetRules()
		target = filepath.Join(t.TempDir(), "restore-again")
		c.restore(restoreOptions{Target: target}, s.SnapshotID)
		if d := workload.Diff(want, manifest(t, target), true); len(d) > 0 {
			t.Fatalf("restore once the flipping stopped differs:\n%s", strings.Join(d, "\n"))
		}
		c.check(checkOptions{ReadData: true})
	})
	if d := time.Since(start); d > 2*time.Minute {
		t.Errorf("the flaky storage tests took %v: the retries are not bounded in time", d)
	}
}

// randomFiles writes n files of size bytes of seeded random data (which
// neither compresses nor deduplicates) into a new directory.
func randomFiles(t *testing.T, n int, size int64, seed uint64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "big")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, size)
	for i := range n {
		_, _ = rng.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("blob-%d.bin", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// incompleteUploads lists the unfinished multipart uploads of bucket.
func incompleteUploads(t *testing.T, srv *s3test.Server, bucket string) []string {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(t.Context(), &awss3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, u := range out.Uploads {
		keys = append(keys, *u.Key)
	}
	return keys
}

// A backup killed (SIGKILL) while a pack's multipart upload is in flight
// leaves the upload unfinished in the store. The next backup needs no
// human (no unlock): it recovers the dead lock, adopts the packs stored
// before the kill instead of uploading them again, and succeeds; earlier
// snapshots restore byte-exact; prune aborts the stale upload, and check
// --read-data is clean.
func TestS3KilledMidMultipart(t *testing.T) {
	srv := s3test.StartMinIO(t)
	c := s3CLI(t, srv, "mp")
	bucket := strings.SplitN(c.repo, "/", 4)[2] // s3://BUCKET/mp
	c.env = append(c.env, fmt.Sprintf("BACKUPD_S3_PART_SIZE=%d", 5<<20), "BACKUPD_UPLOADS=1")
	mustRun := func(extra []string, args ...string) string {
		t.Helper()
		out, stderr, code := c.run(extra, args...)
		if code != 0 {
			t.Fatalf("backupd %s: exit %d\n%s", strings.Join(args, " "), code, stderr)
		}
		return out
	}
	mustRun(nil, "init")
	small := genVolume(t, workload.Options{Proxies: 2, Scale: 0.02, Seed: 3})
	wantSmall := manifest(t, small)
	var s1 summary
	if err := json.Unmarshal([]byte(mustRun(nil, "backup", "--policy", "mesh", "--json", small)), &s1); err != nil {
		t.Fatal(err)
	}
	before := c.packsOf()

	// Packs of 16 MiB in parts of 5 MiB: four parts each, one pack at a
	// time. The 6th part is the second of the second pack.
	const size = 12 << 20
	big := randomFiles(t, 3, size, 9)
	wantBig := manifest(t, big)
	if _, stderr, code := c.run([]string{"BACKUPD_FAULT=" + faultpoint.S3AfterPart + ":6"}, "backup", "--policy", "mesh", big); code != -9 {
		t.Fatalf("backup with %s:6 armed: exit %d, want killed by SIGKILL\n%s", faultpoint.S3AfterPart, code, stderr)
	}
	if ups := incompleteUploads(t, srv, bucket); len(ups) != 1 {
		t.Fatalf("after the kill the store holds %d unfinished multipart uploads (%v), want the one in flight", len(ups), ups)
	}
	if left := packTemps(t, c.tmp); len(left) == 0 {
		t.Fatal("the killed backup left no pack temp file in its TMPDIR: nothing to show their removal on")
	}
	stored := map[string]bool{}
	var storedBytes int64
	r := c.openS3Repo()
	for _, p := range c.packsOf() {
		if !slices.Contains(before, p) {
			stored[p] = true
			fi, err := r.Backend().Stat(t.Context(), backend.Handle{Type: backend.PackFile, Name: p})
			if err != nil {
				t.Fatal(err)
			}
			storedBytes += fi.Size
		}
	}
	if len(stored) == 0 {
		t.Fatal("no pack was stored before the kill: the kill came too early to test adoption")
	}

	var s2 summary
	if err := json.Unmarshal([]byte(mustRun(nil, "backup", "--policy", "mesh", "--json", big)), &s2); err != nil {
		t.Fatal(err)
	}
	// The next process removed what the killed one left in TMPDIR (in a
	// node agent's pod, a size-limited emptyDir that crashes would fill).
	if left := packTemps(t, c.tmp); len(left) != 0 {
		t.Errorf("after the next backup TMPDIR still holds %v", left)
	}
	after := c.packsOf()
	t.Logf("%d packs (%d bytes) stored before the kill; the next backup wrote %d bytes, %d packs in all", len(stored), storedBytes, s2.BytesWritten, len(after))
	for p := range stored {
		if !slices.Contains(after, p) {
			t.Errorf("pack %s stored before the kill is gone after the next backup", p[:8])
		}
	}
	if total := int64(3 * size); int64(s2.BytesWritten) > total-storedBytes/2 {
		t.Errorf("the next backup wrote %d bytes of %d, though %d were stored before the kill: it uploaded them again", s2.BytesWritten, total, storedBytes)
	}
	c.assertRestoreEquals(s1.SnapshotID, wantSmall)
	c.assertRestoreEquals(s2.SnapshotID, wantBig)

	if ups := incompleteUploads(t, srv, bucket); len(ups) != 1 {
		t.Fatalf("before prune the store holds %d unfinished uploads (%v), want the killed one", len(ups), ups)
	}
	time.Sleep(1100 * time.Millisecond) // the upload is older than the stale age below
	mustRun([]string{"BACKUPD_S3_STALE_UPLOAD_AGE=1s"}, "prune", "--grace", "0")
	if ups := incompleteUploads(t, srv, bucket); len(ups) != 0 {
		t.Errorf("after prune the store still holds unfinished uploads %v", ups)
	}
	mustRun(nil, "check", "--read-data")
}

// packTemps lists the pack temp files under dir.
func packTemps(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ok, _ := filepath.Match("pack-*.tmp", e.Name()); ok {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// openS3Repo opens c's repository in this process, without hooks.
func (c *cli) openS3Repo() *repository.Repo {
	c.t.Helper()
	g, _, _ := c.globals(false)
	g.hooks = testHooks{}
	r, _, err := g.open(c.t.Context())
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}
