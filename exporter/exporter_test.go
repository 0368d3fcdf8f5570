package exporter

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"

	"github.com/meshbackup/backupd/backupd/daemon"
	"github.com/meshbackup/backupd/backupd/results"
)

type fakeSource struct{ ready bool }

func (f *fakeSource) Ready() bool { return f.ready }
func (f *fakeSource) Status() []daemon.Status {
	return []daemon.Status{{Policy: "mesh<script>", Repository: "local", RPOSeconds: 300,
		LastSnapshot: time.Now().Add(-time.Minute),
		LastBackups:  []results.Record{{Outcome: results.Failure, Reason: "repository", End: time.Now()}}}}
}

func get(t *testing.T, h http.Handler, path string, accept string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "backupd_backup_runs_total", Help: "x"}, []string{"policy"})
	reg.MustRegister(c)
	c.WithLabelValues("mesh").(prometheus.ExemplarAdder).AddWithExemplar(1, prometheus.Labels{"run_id": "abc123"})
	src := &fakeSource{}
	h := New(reg, src, Options{Version: "test"}).Handler()

	if w := get(t, h, "/readyz", ""); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("readyz before ready: %d", w.Code)
	}
	src.ready = true
	if w := get(t, h, "/readyz", ""); w.Code != http.StatusOK {
		t.Fatalf("readyz: %d", w.Code)
	}
	if w := get(t, h, "/healthz", ""); w.Code != http.StatusOK {
		t.Fatalf("healthz: %d", w.Code)
	}
	w := get(t, h, "/metrics", "application/openmetrics-text; version=1.0.0")
	if !strings.Contains(w.Body.String(), `# {run_id="abc123"} 1`) {
		t.Fatalf("OpenMetrics exposition lacks the run id exemplar:\n%s", w.Body.String())
	}
	w = get(t, h, "/api/v1/status", "")
	if !strings.Contains(w.Body.String(), `"policy": "mesh\u003cscript\u003e"`) || !strings.Contains(w.Body.String(), `"ready": true`) {
		t.Fatalf("status: %s", w.Body.String())
	}
	w = get(t, h, "/", "")
	body := w.Body.String()
	if strings.Contains(body, "<script>") || !strings.Contains(body, "mesh&lt;script&gt;") || !strings.Contains(body, "failure") || !strings.Contains(body, `href="/metrics"`) {
		t.Fatalf("landing page:\n%s", body)
	}
	if w := get(t, h, "/nope", ""); w.Code != http.StatusNotFound {
		t.Fatalf("unknown path: %d", w.Code)
	}
}

// Basic auth from an exporter-toolkit web config file, as node_exporter.
func TestBasicAuthWebConfig(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("scrape-secret"), bcrypt.MinCost)
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := serveWebConfig(t, cfg)
	url := "http://" + addr + "/metrics"
	resp := getRetry(t, http.DefaultClient, url)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.SetBasicAuth("prometheus", "scrape-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with credentials: %d %s", resp.StatusCode, b)
	}
}

// TLS from the same web config file.
func TestTLSWebConfig(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(cert, certPEM, 0o600)
	_ = os.WriteFile(key, keyPEM, 0o600)
	cfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(cfg, []byte("tls_server_config:\n  cert_file: "+cert+"\n  key_file: "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := serveWebConfig(t, cfg)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp := getRetry(t, client, "https://"+addr+"/healthz")
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("https: %d, tls %v", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP is refused.
	if r, err := http.Get("http://" + addr + "/healthz"); err == nil {
		r.Body.Close()
		if r.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served on a TLS listener")
		}
	}
}

// serveWebConfig serves an exporter with a web config file on 127.0.0.1 for
// the rest of the test and returns its address.
func serveWebConfig(t *testing.T, webConfig string) string {
	t.Helper()
	s := New(prometheus.NewRegistry(), &fakeSource{ready: true}, Options{WebConfigFile: webConfig})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.ServeListener(ctx, l) }()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String()
}

// getRetry GETs url until the server answers (it starts asynchronously).
func getRetry(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	var err error
	for range 50 {
		var resp *http.Response
		if resp, err = c.Get(url); err == nil {
			return resp
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// With basic auth on, a kubelet's probes (no credentials) get 401 on the
// main address; the probe address answers them without authentication, and
// serves nothing else. /metrics, /api and the landing page stay protected.
func TestProbeAddressServesProbesWithoutAuth(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("scrape-secret"), bcrypt.MinCost)
	cfg := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(cfg, []byte("basic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{}
	s := New(prometheus.NewRegistry(), src, Options{WebConfigFile: cfg})
	main, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 2)
	go func() { done <- s.ServeListener(ctx, main) }()
	go func() { done <- s.ServeProbes(ctx, probe) }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	status := func(addr, path string) int {
		t.Helper()
		resp := getRetry(t, http.DefaultClient, "http://"+addr+path)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/api/v1/status", "/"} {
		if code := status(main.Addr().String(), path); code != http.StatusUnauthorized {
			t.Errorf("main address %s without credentials: %d, want 401", path, code)
		}
	}
	p := probe.Addr().String()
	if code := status(p, "/healthz"); code != http.StatusOK {
		t.Errorf("probe /healthz: %d, want 200", code)
	}
	if code := status(p, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("probe /readyz before ready: %d, want 503", code)
	}
	src.ready = true
	if code := status(p, "/readyz"); code != http.StatusOK {
		t.Errorf("probe /readyz when ready: %d, want 200", code)
	}
	for _, path := range []string{"/metrics", "/api/v1/status", "/"} {
		if code := status(p, path); code != http.StatusNotFound {
			t.Errorf("probe address %s: %d, want 404 (only the probes are served there)", path, code)
		}
	}
}

type runningSource struct{}

func (runningSource) Ready() bool { return true }
func (runningSource) Status() []daemon.Status {
	return []daemon.Status{{Policy: "mesh", Repository: "local",
		Running: &daemon.Running{RunID: "r1", Kind: results.Backup, Start: time.Now().Add(-time.Minute), Files: 42, FilesNew: 42, BytesRead: 3 << 20}}}
}

// The status API and the landing page show a running backup's progress.
func TestStatusShowsRunningBackup(t *testing.T) {
	h := New(prometheus.NewRegistry(), runningSource{}, Options{}).Handler()
	body := get(t, h, "/api/v1/status", "").Body.String()
	for _, want := range []string{`"running": {`, `"run_id": "r1"`, `"files": 42`, `"bytes_read": 3145728`, `"start": "`} {
		if !strings.Contains(body, want) {
			t.Errorf("status lacks %s:\n%s", want, body)
		}
	}
	if page := get(t, h, "/", "").Body.String(); !strings.Contains(page, "running, started 1m0s ago: 42 files, 3.0 MiB read") {
		t.Errorf("landing page lacks the running backup:\n%s", page)
	}
}
