package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// startTestProxy serves a counting proxy to backend, stopped at cleanup.
func startTestProxy(t testing.TB, backend string) *countingProxy {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	p, err := startCountingProxy(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func TestCountingProxy(t *testing.T) {
	var hosts []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hosts = append(hosts, r.Host)
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			t.Errorf("backend read: %v", err)
		}
		switch r.Method {
		case http.MethodGet:
			n, _ := strconv.Atoi(r.URL.Query().Get("size"))
			w.Write(bytes.Repeat([]byte("g"), n))
		case http.MethodHead:
			w.Header().Set("Content-Length", "7777") // no body is sent
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case http.MethodPut:
			if strings.HasSuffix(r.URL.Path, "/missing") {
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, "nope")
			}
		}
	}))
	t.Cleanup(backend.Close)
	p := startTestProxy(t, backend.URL)

	do := func(method, path string, body io.Reader) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, p.url()+path, body)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// Warm-up traffic that the snapshot below must leave out.
	do(http.MethodGet, "/b/warm?size=100", nil)
	before := p.snapshot()

	do(http.MethodPut, "/b/sized", bytes.NewReader(make([]byte, 1000)))
	// A body of unknown length goes chunked: Content-Length says nothing.
	do(http.MethodPut, "/b/chunked", io.MultiReader(strings.NewReader(strings.Repeat("c", 3000))))
	do(http.MethodPut, "/b/missing", strings.NewReader("12345"))
	do(http.MethodGet, "/b/obj?size=5000", nil)
	do(http.MethodHead, "/b/obj", nil)
	do(http.MethodDelete, "/b/obj", nil)

	got := p.snapshot().sub(before)
	want := &Traffic{
		Requests:      6,
		ByMethod:      map[string]int64{"PUT": 3, "GET": 1, "HEAD": 1, "DELETE": 1},
		ByStatus:      map[string]int64{"2xx": 5, "4xx": 1},
		SentBytes:     1000 + 3000 + 5,
		ReceivedBytes: 5000 + 4,
	}
	if got.Requests != want.Requests || got.SentBytes != want.SentBytes || got.ReceivedBytes != want.ReceivedBytes ||
		!maps.Equal(got.ByMethod, want.ByMethod) || !maps.Equal(got.ByStatus, want.ByStatus) {
		t.Errorf("traffic\n got %+v\nwant %+v", got, want)
	}
	if m := got.methods(); m != "GET 1, HEAD 1, PUT 3, DELETE 1" {
		t.Errorf("methods %q", m)
	}
	// SigV4 signs the Host header: the backend must see the host the
	// client addressed (the proxy's), not its own.
	for _, h := range hosts {
		if h != p.addr {
			t.Fatalf("backend saw Host %q, want the proxy's %q", h, p.addr)
		}
	}
}

func TestCountingProxyBackendDown(t *testing.T) {
	backend := httptest.NewServer(http.NotFoundHandler())
	backend.Close() // nothing listens there any more
	p := startTestProxy(t, backend.URL)
	resp, err := http.Get(p.url() + "/b/k")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", resp.StatusCode)
	}
	if s := p.snapshot(); s.Requests != 1 || s.ByStatus["proxy error"] != 1 {
		t.Errorf("traffic %+v, want 1 request, 1 proxy error", s)
	}
}

// startTestMinio starts the MinIO binary (skipped with -short, fails when
// it is not installed).
func startTestMinio(t *testing.T) *minioServer {
	t.Helper()
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	bin := findTool("minio", "")
	if bin == "" {
		t.Fatal("minio is not installed: run ./scripts/install-tools.sh minio")
	}
	creds, err := newS3Creds()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startMinio(t.Context(), bin, t.TempDir(), creds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	return srv
}

// TestProxyMinio checks that SigV4 requests validate through the proxy
// and that uploads and downloads are counted, and the bucket save and
// reset used between repeated small-change runs.
func TestProxyMinio(t *testing.T) {
	srv := startTestMinio(t)
	if !strings.HasPrefix(srv.version, "minio version") {
		t.Errorf("version %q", srv.version)
	}
	p := startTestProxy(t, srv.url())
	ctx := t.Context()
	viaProxy := newS3Client(p.url(), srv.creds)
	if err := createBucket(ctx, viaProxy, "bkt"); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	put := func(c *s3.Client, key string, data []byte) {
		t.Helper()
		if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}
	get := func(c *s3.Client, key string) []byte {
		t.Helper()
		out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		defer out.Body.Close()
		b, err := io.ReadAll(out.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := p.snapshot()
	put(viaProxy, "data/one", body)
	if got := get(viaProxy, "data/one"); !bytes.Equal(got, body) {
		t.Fatalf("read back %d bytes, want %d", len(got), len(body))
	}
	tr := p.snapshot().sub(before)
	n := int64(len(body))
	// The SDK may add an aws-chunked framing and a checksum trailer to the
	// upload: a few hundred bytes at most.
	if tr.Requests != 2 || tr.ByMethod["PUT"] != 1 || tr.ByMethod["GET"] != 1 || tr.ByStatus["2xx"] != 2 ||
		tr.SentBytes < n || tr.SentBytes > n+1024 || tr.ReceivedBytes != n {
		t.Errorf("traffic %+v, want 1 PUT of %d bytes and 1 GET of as many", tr, n)
	}

	// Direct to MinIO: the save and reset between repeated runs.
	direct := newS3Client(srv.url(), srv.creds)
	put(direct, "data/two", []byte("two"))
	put(direct, "data/key with space+plus", []byte("odd key"))
	bs, err := saveBucket(ctx, direct, "bkt", "bkt-saved")
	if err != nil {
		t.Fatal(err)
	}
	want, err := listBucket(ctx, direct, "bkt")
	if err != nil {
		t.Fatal(err)
	}
	put(direct, "data/new", []byte("added after the save"))
	put(direct, "data/two", []byte("rewritten"))
	if _, err := direct.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("bkt"), Key: aws.String("data/key with space+plus")}); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // a second reset finds nothing to do but must still be right
		if err := bs.restore(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := listBucket(ctx, direct, "bkt")
		if err != nil {
			t.Fatal(err)
		}
		if keys, wantKeys := slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)); !slices.Equal(keys, wantKeys) {
			t.Fatalf("reset %d: keys %q, want %q", i, keys, wantKeys)
		}
		if b := get(direct, "data/two"); string(b) != "two" {
			t.Errorf("reset %d: data/two is %q", i, b)
		}
		if b := get(direct, "data/key with space+plus"); string(b) != "odd key" {
			t.Errorf("reset %d: odd key is %q", i, b)
		}
		if size, err := bucketSize(ctx, direct, "bkt"); err != nil || size != n+3+7 {
			t.Errorf("reset %d: bucket size %d, %v; want %d", i, size, err, n+3+7)
		}
	}
	if err := bs.remove(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestS3Drivers(t *testing.T) {
	creds := s3Creds{accessKey: "AKIDbenchtest", secretKey: "s3cr3t-not-to-be-seen"}
	home := t.TempDir()
	target := func(tool string) *s3Target {
		return &s3Target{endpoint: "127.0.0.1:4567", bucket: bucketFor(tool), creds: creds}
	}
	for _, tc := range []struct {
		tool     string
		wantInit []string
		wantEnv  []string
	}{
		{"backupd", []string{"init", "--repo", "s3://bench-backupd", "--s3-path-style=true"},
			[]string{"AWS_ENDPOINT_URL=http://127.0.0.1:4567", "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=AKIDbenchtest", "AWS_SECRET_ACCESS_KEY=s3cr3t-not-to-be-seen"}},
		{"restic", []string{"init"},
			[]string{"RESTIC_REPOSITORY=s3:http://127.0.0.1:4567/bench-restic", "AWS_ACCESS_KEY_ID=AKIDbenchtest", "AWS_SECRET_ACCESS_KEY=s3cr3t-not-to-be-seen"}},
		{"kopia", []string{"repository", "create", "s3", "--bucket", "bench-kopia", "--endpoint", "127.0.0.1:4567", "--disable-tls", "--region", "us-east-1"},
			[]string{"AWS_ACCESS_KEY_ID=AKIDbenchtest", "AWS_SECRET_ACCESS_KEY=s3cr3t-not-to-be-seen"}},
	} {
		t.Run(tc.tool, func(t *testing.T) {
			d, err := newDriver(tc.tool, "/bin/"+tc.tool, filepath.Join(home, tc.tool), target(tc.tool))
			if err != nil {
				t.Fatal(err)
			}
			initInv := d.initCmd()
			if !slices.Equal(initInv.args, tc.wantInit) {
				t.Errorf("init %q, want %q", initInv.args, tc.wantInit)
			}
			for _, kv := range tc.wantEnv {
				if !slices.Contains(initInv.env, kv) {
					t.Errorf("environment lacks %s", kv)
				}
			}
			if d.bucket() != bucketFor(tc.tool) {
				t.Errorf("bucket %q", d.bucket())
			}
			for _, inv := range []invocation{initInv, d.backupCmd("/src", 1), d.restoreCmd("/src", "/t", 1)} {
				for _, a := range inv.args {
					if strings.Contains(a, creds.secretKey) || strings.Contains(a, creds.accessKey) {
						t.Errorf("a key on the command line: %q", inv.args)
					}
				}
			}
			if tc.tool == "backupd" {
				b := d.backupCmd("/src", 2).args
				if want := []string{"backup", "--repo", "s3://bench-backupd", "--s3-path-style=true", "--policy", "bench", "--json", "/src"}; !slices.Equal(b, want) {
					t.Errorf("backup %q, want %q", b, want)
				}
			}
		})
	}
	if _, err := newDriver("borg", "/bin/borg", filepath.Join(home, "borg"), target("borg")); err == nil {
		t.Error("borg got an S3 driver")
	}
	// In local mode nothing of S3 is set.
	d, err := newDriver("backupd", "/bin/backupd", filepath.Join(home, "local"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if args := d.initCmd().args; !slices.Equal(args, []string{"init", "--repo", filepath.Join(home, "local", "repo")}) {
		t.Errorf("local init %q", args)
	}
	for _, kv := range d.initCmd().env {
		if strings.HasPrefix(kv, "AWS_") {
			t.Errorf("local mode environment has %s", kv)
		}
	}
}

func TestReportHasNoSecrets(t *testing.T) {
	creds := s3Creds{accessKey: "AKIDbenchtest", secretKey: "s3cr3t-not-to-be-seen"}
	d, err := newDriver("kopia", "/bin/kopia", t.TempDir(), &s3Target{endpoint: "127.0.0.1:1", bucket: "bench-kopia", creds: creds})
	if err != nil {
		t.Fatal(err)
	}
	// A tool that echoes a key into its error output (kopia printing its
	// flags, say) and a command line that carries one.
	m := &Measurement{
		Command: []string{"/bin/kopia", "--secret-access-key=" + creds.secretKey},
		Error:   fmt.Sprintf("exit status 1: access key %s secret %s rejected", creds.accessKey, creds.secretKey),
		Summary: json.RawMessage(`{"secret":"` + creds.secretKey + `"}`),
		S3:      &Traffic{Requests: 3, ByMethod: map[string]int64{"GET": 3}},
	}
	m.redact(d.secrets())
	res := &Results{
		S3:      &S3Info{Server: "minio version X", Buckets: map[string]string{"kopia": "bench-kopia"}},
		Skipped: []Skipped{{Tool: "borg", Reason: "no S3 backend"}},
		Tools:   []*ToolResult{{Name: "kopia", Init: m, FirstBackup: m, Errors: []string{"first backup: " + m.Error}}},
	}
	js, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	md := renderMarkdown(res)
	for _, out := range []string{string(js), md} {
		for _, s := range creds.secrets() {
			if strings.Contains(out, s) {
				t.Errorf("output holds %q:\n%s", s, out)
			}
		}
	}
	for _, s := range []string{"**S3 mode**", "borg skipped: no S3 backend", "| kopia | init (failed) | 3 | GET 3 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

func TestS3Ratios(t *testing.T) {
	ok := func(wall float64) *Measurement { return &Measurement{WallSec: wall} }
	tool := func(name string, requests ...int64) *ToolResult {
		r := &ToolResult{Name: name, FirstBackup: ok(1), NoChange: ok(1), SmallChange: ok(1), Change: ok(1),
			Restore: ok(1), RestoreVerified: true, PeakRSSKiB: 100}
		for _, n := range requests {
			r.NoChangeTraffic = append(r.NoChangeTraffic, &Traffic{Requests: n})
		}
		return r
	}
	for _, tc := range []struct {
		name       string
		bd, peer   []int64
		want       string
		wantValues [2]float64
	}{
		{"fewer", []int64{5, 4, 30}, []int64{16, 16, 16}, "PASS", [2]float64{5, 16}},
		{"as many", []int64{16}, []int64{16}, "FAIL", [2]float64{16, 16}},
		{"more", []int64{20, 20}, []int64{16, 17}, "FAIL", [2]float64{20, 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := computeRatios([]*ToolResult{tool("backupd", tc.bd...), tool("restic", tc.peer...)}, true)
			i := slices.IndexFunc(rs, func(r Ratio) bool { return r.Measure == noChangeRequestsMeasure })
			if i < 0 {
				t.Fatal("no request ratio in S3 mode")
			}
			r := rs[i]
			if r.Result != tc.want || *r.Backupd != tc.wantValues[0] || *r.PeerValue != tc.wantValues[1] {
				t.Errorf("%s: %v vs %v, want %s %v", r.Result, *r.Backupd, *r.PeerValue, tc.want, tc.wantValues)
			}
		})
	}
	if rs := computeRatios([]*ToolResult{tool("backupd", 1), tool("restic", 2)}, false); slices.ContainsFunc(rs, func(r Ratio) bool { return r.Unit == "requests" }) {
		t.Error("a request ratio in local mode")
	}
}

func TestParseFlags(t *testing.T) {
	root := moduleRoot()
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
		wantS3  bool
	}{
		{"local default", nil, "", filepath.Join(root, "bench", "results", "latest.json"), false},
		{"s3 default", []string{"-s3"}, "", filepath.Join(root, "bench", "results", "s3.json"), true},
		{"s3 explicit out", []string{"-s3", "-out", "/tmp/x.json"}, "", "/tmp/x.json", true},
		{"bad repeat", []string{"-s3", "-repeat", "0"}, "-repeat 0", "", false},
		{"bad scale", []string{"-scale", "-1"}, "-scale -1", "", false},
		{"extra argument", []string{"-s3", "now"}, "unexpected arguments", "", false},
		{"bad s3 value", []string{"-s3=maybe"}, "invalid boolean", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.out != tc.wantOut || cfg.s3 != tc.wantS3 {
				t.Errorf("out %s s3 %v, want %s %v", cfg.out, cfg.s3, tc.wantOut, tc.wantS3)
			}
		})
	}
}

func TestSkipForS3(t *testing.T) {
	kept, skipped := skipForS3([]string{"backupd", "restic", "borg", "kopia"})
	if !slices.Equal(kept, []string{"backupd", "restic", "kopia"}) {
		t.Errorf("kept %q", kept)
	}
	if len(skipped) != 1 || skipped[0].Tool != "borg" {
		t.Errorf("skipped %+v", skipped)
	}
	// borg is named as skipped even when it was not selected.
	if _, skipped := skipForS3([]string{"restic"}); len(skipped) != 1 {
		t.Errorf("skipped %+v", skipped)
	}
}
