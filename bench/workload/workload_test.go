package workload

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/blake3"
)

// small is the unit-test volume set of the package documentation.
var small = Options{Proxies: 4, ConsulServers: 1, Scale: 0.02, Seed: 7}

// tiny is the smallest useful set.
var tiny = Options{Proxies: 1, ConsulServers: 1, Scale: 0.005}

func generate(t *testing.T, opt Options) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "vol")
	if err := Generate(root, opt); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return root
}

func manifest(t *testing.T, root string) map[string]Entry {
	t.Helper()
	m, err := Manifest(root)
	if err != nil {
		t.Fatalf("Manifest: %v", err)
	}
	return m
}

func mutate(t *testing.T, root string, opt Options, steps int) {
	t.Helper()
	if err := Mutate(root, opt, steps); err != nil {
		t.Fatalf("Mutate: %v", err)
	}
}

// proxyDirs returns the absolute proxy directories of a tree, in index order.
func proxyDirs(t *testing.T, root string) []string {
	t.Helper()
	st, err := loadState(root)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, p := range st.Proxies {
		dirs = append(dirs, filepath.Join(root, filepath.FromSlash(p.Dir)))
	}
	return dirs
}

func contiguous(s []uint64) error {
	if len(s) == 0 {
		return fmt.Errorf("no seqs")
	}
	for i := 1; i < len(s); i++ {
		if s[i] != s[i-1]+1 {
			return fmt.Errorf("seq %d follows %d (index %d of %d)", s[i], s[i-1], i, len(s))
		}
	}
	return nil
}

func TestGenerateDeterministic(t *testing.T) {
	base := generate(t, small)
	want := manifest(t, base)
	tests := []struct {
		name  string
		opt   Options
		equal bool
	}{
		{"same options", small, true},
		{"other seed", Options{Proxies: 4, ConsulServers: 1, Scale: 0.02, Seed: 8}, false},
		{"other scale", Options{Proxies: 4, ConsulServers: 1, Scale: 0.03, Seed: 7}, false},
		{"more proxies", Options{Proxies: 5, ConsulServers: 1, Scale: 0.02, Seed: 7}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Diff(want, manifest(t, generate(t, tc.opt)), false)
			if tc.equal && len(d) > 0 {
				t.Errorf("trees differ:\n%s", strings.Join(d[:min(len(d), 20)], "\n"))
			}
			if !tc.equal && len(d) == 0 {
				t.Errorf("trees are equal")
			}
		})
	}
}

func TestGenerateSmallSet(t *testing.T) {
	start := time.Now()
	root := generate(t, small)
	elapsed := time.Since(start)
	m := manifest(t, root)
	t.Logf("small set: %d entries generated in %v", len(m), elapsed)
	if elapsed > 5*time.Second {
		t.Errorf("small set took %v", elapsed)
	}

	var total int64
	count := map[string]int{}
	perms := map[fs.FileMode]int{}
	empty := 0
	for p, e := range m {
		count[e.Type]++
		if e.Type == "file" {
			total += e.Size
			perms[e.Mode.Perm()]++
			if e.Size == 0 {
				empty++
			}
			if e.Hash == "" {
				t.Errorf("%s: no hash", p)
			}
		}
	}
	t.Logf("types %v, %d bytes, perms %v", count, total, perms)
	if total < 1<<20 || total > 8<<20 {
		t.Errorf("small set has %d bytes, want a few MB", total)
	}
	if count["socket"] != small.Proxies || count["symlink"] != 4*small.Proxies || count["other"] != 0 {
		t.Errorf("entry types %v", count)
	}
	if empty < small.Proxies {
		t.Errorf("%d empty files", empty)
	}
	for _, perm := range []fs.FileMode{0o600, 0o644, 0o755} {
		if perms[perm] == 0 {
			t.Errorf("no file with mode %v", perm)
		}
	}
	if _, ok := m[stateFileName]; ok {
		t.Errorf("manifest lists %s", stateFileName)
	}

	taps := 0
	for _, dir := range proxyDirs(t, root) {
		rel, _ := filepath.Rel(root, dir)
		rel = filepath.ToSlash(rel)
		for _, want := range []struct{ name, typ string }{
			{"access.log", "file"}, {"config_dump.json", "file"}, {"stats.txt", "file"},
			{"bootstrap.json", "file"}, {"certs/cert-chain.pem", "file"}, {"certs/key.pem", "file"},
			{"certs/root-cert.pem", "file"}, {"admin.sock", "socket"}, {"ready", "file"},
			{"serviceaccount/..data", "symlink"}, {"serviceaccount/token", "symlink"},
			{"bin/healthcheck.sh", "file"}, {"xds/eds", "dir"},
		} {
			if e, ok := m[rel+"/"+want.name]; !ok || e.Type != want.typ {
				t.Errorf("%s/%s: got %+v, want a %s", rel, want.name, e, want.typ)
			}
		}
		if target := m[rel+"/serviceaccount/..data"].Target; m[rel+"/serviceaccount/"+target].Type != "dir" || !strings.HasPrefix(target, "..2026_") {
			t.Errorf("%s: ..data -> %q", rel, target)
		}
		if e := m[rel+"/certs/key.pem"]; e.Mode.Perm() != 0o600 {
			t.Errorf("key.pem mode %v", e.Mode)
		}
		if e := m[rel+"/bin/healthcheck.sh"]; e.Mode.Perm() != 0o755 {
			t.Errorf("healthcheck.sh mode %v", e.Mode)
		}
		if _, ok := m[rel+"/tap"]; ok {
			taps++
		}
		for _, name := range []string{"config_dump.json", "bootstrap.json"} {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || !json.Valid(b) {
				t.Errorf("%s/%s: not valid JSON (%v)", rel, name, err)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "bootstrap.json")); len(b) < 10<<10 || len(b) > 30<<10 {
			t.Errorf("bootstrap.json has %d bytes", len(b))
		}
		for _, name := range []string{"cert-chain.pem", "key.pem", "root-cert.pem"} {
			b, _ := os.ReadFile(filepath.Join(dir, "certs", name))
			if len(b) < 1000 || len(b) > 3000 || !bytes.HasPrefix(b, []byte("-----BEGIN ")) {
				t.Errorf("%s: %d bytes: %.30q", name, len(b), b)
			}
		}
		log, err := os.ReadFile(filepath.Join(dir, "access.log"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.SplitAfter(string(log), "\n") {
			if line != "" && (len(line) < minLine || len(line) > maxLine || !strings.Contains(line, " seq=")) {
				t.Errorf("bad access-log line (%d bytes): %q", len(line), line)
			}
		}
		seqs, err := Seqs(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := contiguous(seqs); err != nil {
			t.Errorf("%s: %v", rel, err)
		}
	}
	if taps != 1 {
		t.Errorf("%d proxies with tap traces, want 1", taps)
	}
	for _, p := range []string{"consul/server-0/raft/raft.db", "consul/server-0/serf/local.snapshot"} {
		if e := m[p]; e.Type != "file" || e.Size == 0 {
			t.Errorf("%s: %+v", p, e)
		}
	}
	if s := m["consul/server-0/raft/raft.db"].Size; s%pageSize != 0 {
		t.Errorf("raft.db size %d is not a multiple of the page size", s)
	}
	metas, _ := filepath.Glob(filepath.Join(root, "consul/server-0/raft/snapshots/*/meta.json"))
	if len(metas) != snapshotsKept {
		t.Errorf("%d snapshots", len(metas))
	}
	for _, f := range metas {
		if b, _ := os.ReadFile(f); !json.Valid(b) {
			t.Errorf("%s: invalid JSON", f)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	nonEmpty := t.TempDir()
	os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644)
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	tests := []struct {
		name string
		root string
		opt  Options
	}{
		{"non-empty root", nonEmpty, small},
		{"root is a file", file, small},
		{"negative proxies", filepath.Join(t.TempDir(), "a"), Options{Proxies: -1}},
		{"negative scale", filepath.Join(t.TempDir(), "b"), Options{Scale: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Generate(tc.root, tc.opt); err == nil {
				t.Error("Generate succeeded")
			}
		})
	}
	root := generate(t, small)
	if err := Mutate(root, Options{Proxies: 5, ConsulServers: 1, Scale: 0.02, Seed: 7}, 1); err == nil {
		t.Error("Mutate with mismatched options succeeded")
	}
	if err := Crash(root, small, small.Proxies); err == nil {
		t.Error("Crash of a proxy out of range succeeded")
	}
	if err := Mutate(t.TempDir(), small, 1); err == nil {
		t.Error("Mutate of a tree without state succeeded")
	}
}

// kind groups manifest paths by the generator that wrote them.
func kind(path string) string {
	base := path[strings.LastIndexByte(path, '/')+1:]
	switch {
	case strings.HasPrefix(base, "access.log"):
		return "access.log"
	case strings.Contains(path, "/serviceaccount/"):
		return "serviceaccount"
	case strings.Contains(path, "/xds/eds/"):
		return "eds"
	case strings.Contains(path, "/tap/"):
		return "tap"
	case strings.Contains(path, "/raft/snapshots/"):
		return "snapshot"
	}
	return base
}

func TestMutate(t *testing.T) {
	opt := small
	root := generate(t, opt)
	before := manifest(t, root)
	appendOnly := []string{
		filepath.Join(proxyDirs(t, root)[0], "access.log"),
		filepath.Join(root, "consul/server-0/serf/local.snapshot"),
		filepath.Join(root, "consul/server-0/serf/remote.snapshot"),
	}
	var old [][]byte
	for _, f := range appendOnly {
		b, _ := os.ReadFile(f)
		old = append(old, b)
	}
	raftPath := filepath.Join(root, "consul/server-0/raft/raft.db")
	oldRaft, _ := os.ReadFile(raftPath)
	mutate(t, root, opt, 3)
	after := manifest(t, root)

	for i, f := range appendOnly {
		if b, _ := os.ReadFile(f); !bytes.HasPrefix(b, old[i]) || len(b) == len(old[i]) && i < 2 {
			t.Errorf("%s: not appended to (%d -> %d bytes)", f, len(old[i]), len(b))
		}
	}
	newRaft, _ := os.ReadFile(raftPath)
	changedPages := 0
	for off := 0; off < len(oldRaft); off += pageSize {
		if !bytes.Equal(oldRaft[off:off+pageSize], newRaft[off:off+pageSize]) {
			changedPages++
		}
	}
	t.Logf("raft.db: %d of %d pages rewritten in place, %d -> %d bytes", changedPages, len(oldRaft)/pageSize, len(oldRaft), len(newRaft))
	if changedPages == 0 || changedPages > len(oldRaft)/pageSize/2 {
		t.Errorf("raft.db: %d of %d pages changed", changedPages, len(oldRaft)/pageSize)
	}

	changed := map[string]int{}
	total := map[string]int{}
	for p, e := range before {
		if e.Type != "file" {
			continue
		}
		k := kind(p)
		total[k]++
		if a, ok := after[p]; !ok || a.Hash != e.Hash {
			changed[k]++
		}
		if k == "access.log" && p[len(p)-1] == 'g' && after[p].Size <= e.Size {
			t.Errorf("%s did not grow", p)
		}
	}
	t.Logf("changed files by kind: %v of %v", changed, total)
	for _, k := range []string{"access.log", "stats.txt", "raft.db", "local.snapshot"} {
		if changed[k] != total[k] {
			t.Errorf("%s: %d of %d files changed, want all", k, changed[k], total[k])
		}
	}
	for _, k := range []string{"bootstrap.json", "cert-chain.pem", "key.pem", "root-cert.pem", "envoy.env", "healthcheck.sh", "ready", "node-id"} {
		if changed[k] != 0 {
			t.Errorf("%s: %d files changed, want none", k, changed[k])
		}
	}
	if after["consul/server-0/raft/raft.db"].Size < before["consul/server-0/raft/raft.db"].Size {
		t.Error("raft.db shrank")
	}
	for _, dir := range proxyDirs(t, root) {
		seqs, err := Seqs(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := contiguous(seqs); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}

	// Mutate is deterministic and step-additive: 3 steps at once equal
	// 1+2 steps on an identical tree.
	other := generate(t, opt)
	mutate(t, other, opt, 1)
	mutate(t, other, opt, 2)
	if d := Diff(after, manifest(t, other), false); len(d) > 0 {
		t.Errorf("Mutate(3) != Mutate(1)+Mutate(2):\n%s", strings.Join(d[:min(len(d), 20)], "\n"))
	}
}

// TestMutateLong runs 13 simulated hours on a tiny set: PEMs and tokens
// rotate, logs rotate with the rename chain, snapshots rotate.
func TestMutateLong(t *testing.T) {
	opt := Options{Proxies: 2, ConsulServers: 1, Scale: 0.01, Seed: 3, LogRotateBytes: 16 << 10}
	root := generate(t, opt)
	before := manifest(t, root)
	snapsBefore, _ := filepath.Glob(filepath.Join(root, "consul/server-0/raft/snapshots/*"))
	start := time.Now()
	mutate(t, root, opt, 13*60)
	t.Logf("780 steps in %v", time.Since(start))
	after := manifest(t, root)
	for _, dir := range proxyDirs(t, root) {
		rel, _ := filepath.Rel(root, dir)
		rel = filepath.ToSlash(rel)
		for _, name := range []string{"certs/cert-chain.pem", "certs/key.pem", "config_dump.json"} {
			if before[rel+"/"+name].Hash == after[rel+"/"+name].Hash {
				t.Errorf("%s/%s unchanged after 13 hours", rel, name)
			}
		}
		if before[rel+"/bootstrap.json"] != after[rel+"/bootstrap.json"] {
			t.Errorf("%s/bootstrap.json changed", rel)
		}
		if a, b := before[rel+"/serviceaccount/..data"].Target, after[rel+"/serviceaccount/..data"].Target; a == b {
			t.Errorf("%s: token volume not refreshed (..data -> %s)", rel, a)
		} else if _, ok := after[rel+"/serviceaccount/"+a]; ok {
			t.Errorf("%s: old projected dir %s left behind", rel, a)
		}
		for i := 1; i <= 6; i++ {
			_, ok := after[fmt.Sprintf("%s/access.log.%d", rel, i)]
			if ok != (i <= keptGenerations) {
				t.Errorf("%s/access.log.%d present=%v", rel, i, ok)
			}
		}
		seqs, err := Seqs(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := contiguous(seqs); err != nil {
			t.Errorf("%s: %v", rel, err)
		}
		if seqs[0] == 1 {
			t.Errorf("%s: oldest generation was not dropped", rel)
		}
	}
	snaps, _ := filepath.Glob(filepath.Join(root, "consul/server-0/raft/snapshots/*"))
	if len(snaps) != snapshotsKept || snaps[0] == snapsBefore[0] || snaps[1] == snapsBefore[1] {
		t.Errorf("snapshots %v, before %v", snaps, snapsBefore)
	}
}

func TestConfigDumpMutation(t *testing.T) {
	opt, _ := Options{Proxies: 3}.normalize()
	p := layout(opt)[1]
	data := genConfigDump(opt, &p, configDumpBytes(opt, &p), startClockMs)
	if !json.Valid(data) {
		t.Fatal("generated config dump is not valid JSON")
	}
	for seed := uint64(0); seed < 6; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			out := mutateConfigDump(data, newRand(seed))
			if len(out) != len(data) {
				t.Fatalf("length %d, want %d", len(out), len(data))
			}
			diff := 0
			const block = 64 << 10
			touched := map[int]bool{}
			for i := range data {
				if data[i] != out[i] {
					diff++
					touched[i/block] = true
				}
			}
			frac := float64(diff) / float64(len(data))
			blocks := (len(data) + block - 1) / block
			t.Logf("%d bytes: %.2f%% changed, %d of %d 64 KiB blocks touched", len(data), 100*frac, len(touched), blocks)
			if frac < 0.01 || frac > 0.05 {
				t.Errorf("%.2f%% of bytes changed", 100*frac)
			}
			if len(touched) == blocks {
				t.Errorf("changes are not clustered: every block touched")
			}
			if !json.Valid(out) {
				t.Error("mutated config dump is not valid JSON")
			}
		})
	}
}

func TestManifestDiff(t *testing.T) {
	tests := []struct {
		name          string
		change        func(t *testing.T, root, dir string)
		ignoreSockets bool
		want          string // substring of the diff; "" means no difference
	}{
		{"unchanged", func(*testing.T, string, string) {}, false, ""},
		{"changed byte", func(t *testing.T, root, dir string) {
			path := filepath.Join(dir, "config_dump.json")
			b, _ := os.ReadFile(path)
			b[len(b)/2] ^= 1
			os.WriteFile(path, b, 0o644)
		}, false, "config_dump.json: content hash"},
		{"mode", func(t *testing.T, root, dir string) {
			os.Chmod(filepath.Join(dir, "envoy.env"), 0o640)
		}, false, "envoy.env: mode -rw-r-----, want -rw-------"},
		{"symlink target", func(t *testing.T, root, dir string) {
			link := filepath.Join(dir, "serviceaccount", "token")
			os.Remove(link)
			os.Symlink("..data/namespace", link)
		}, false, `serviceaccount/token: symlink target "..data/namespace", want "..data/token"`},
		{"appended", func(t *testing.T, root, dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, "ready"), os.O_APPEND|os.O_WRONLY, 0)
			f.WriteString("x")
			f.Close()
		}, false, "ready: size 1, want 0"},
		{"missing", func(t *testing.T, root, dir string) {
			os.Remove(filepath.Join(dir, "stats.txt"))
		}, false, "stats.txt: missing"},
		{"unexpected", func(t *testing.T, root, dir string) {
			os.WriteFile(filepath.Join(dir, "core.1234"), []byte("x"), 0o600)
		}, false, "core.1234: unexpected file"},
		{"socket missing", func(t *testing.T, root, dir string) {
			os.Remove(filepath.Join(dir, "admin.sock"))
		}, false, "admin.sock: missing (want socket)"},
		{"socket missing, ignored", func(t *testing.T, root, dir string) {
			os.Remove(filepath.Join(dir, "admin.sock"))
		}, true, ""},
		{"socket became file, ignored", func(t *testing.T, root, dir string) {
			os.Remove(filepath.Join(dir, "admin.sock"))
			os.WriteFile(filepath.Join(dir, "admin.sock"), nil, 0o600)
		}, true, ""},
		{"state file ignored", func(t *testing.T, root, dir string) {
			os.WriteFile(filepath.Join(root, stateFileName), []byte("{}"), 0o644)
		}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := generate(t, tiny)
			want := manifest(t, root)
			rel, _ := filepath.Rel(root, proxyDirs(t, root)[0])
			cfg := filepath.ToSlash(rel) + "/config_dump.json"
			e, ok := want[cfg]
			if !ok {
				t.Fatalf("no %s in the small set", cfg)
			}
			b, _ := os.ReadFile(filepath.Join(root, cfg))
			if sum := blake3.Sum256(b); e.Hash != hex.EncodeToString(sum[:]) || e.Size != int64(len(b)) {
				t.Fatalf("entry %+v does not match the file", e)
			}
			tc.change(t, root, filepath.Dir(filepath.Join(root, cfg)))
			d := Diff(want, manifest(t, root), tc.ignoreSockets)
			switch {
			case tc.want == "" && len(d) > 0:
				t.Errorf("unexpected diff:\n%s", strings.Join(d, "\n"))
			case tc.want != "" && (len(d) == 0 || !strings.Contains(d[0], tc.want)):
				t.Errorf("diff %q, want a first line containing %q", d, tc.want)
			}
		})
	}
}

func TestAppenderRotate(t *testing.T) {
	opt := small
	root := generate(t, opt)
	dir := proxyDirs(t, root)[1]
	before, err := Seqs(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAppender(root, opt, 1)
	if err != nil {
		t.Fatal(err)
	}
	added := 0
	for i, n := range []int{100, 1, 0, 50, 7, 300, 2, 9} {
		if err := a.Append(n); err != nil {
			t.Fatal(err)
		}
		added += n
		if i%2 == 1 {
			if err := a.Rotate(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Concurrent appends from two goroutines keep whole lines and seqs.
	errc := make(chan error, 2)
	for g := 0; g < 2; g++ {
		go func() {
			var err error
			for i := 0; i < 20 && err == nil; i++ {
				err = a.Append(3)
			}
			errc <- err
		}()
	}
	for g := 0; g < 2; g++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	added += 120
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Append(1); err == nil {
		t.Error("Append after Close succeeded")
	}
	seqs, err := Seqs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := contiguous(seqs); err != nil {
		t.Fatal(err)
	}
	// 4 rotations: nothing dropped yet.
	if seqs[0] != before[0] || len(seqs) != len(before)+added {
		t.Errorf("seqs %d..%d (%d), want %d..%d", seqs[0], seqs[len(seqs)-1], len(seqs), before[0], before[0]+uint64(len(before)+added)-1)
	}
	for i := 1; i <= 4; i++ {
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("access.log.%d", i))); err != nil {
			t.Error(err)
		}
	}
	// Two more rotations drop the oldest generation; Mutate continues the seqs.
	a, err = NewAppender(root, opt, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := a.Rotate(); err != nil {
			t.Fatal(err)
		}
		if err := a.Append(5); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	mutate(t, root, opt, 2)
	seqs2, _ := Seqs(dir)
	if err := contiguous(seqs2); err != nil {
		t.Fatal(err)
	}
	if seqs2[0] <= seqs[0] || seqs2[len(seqs2)-1] <= seqs[len(seqs)-1]+10 {
		t.Errorf("after more rotations: seqs %d..%d, before %d..%d", seqs2[0], seqs2[len(seqs2)-1], seqs[0], seqs[len(seqs)-1])
	}
	if _, err := os.Stat(filepath.Join(dir, "access.log.6")); err == nil {
		t.Error("access.log.6 exists")
	}
}

func TestCrash(t *testing.T) {
	opt := small
	root := generate(t, opt)
	mutate(t, root, opt, 2)
	dir := proxyDirs(t, root)[0]
	seqs, _ := Seqs(dir)
	last := seqs[len(seqs)-1]
	before := manifest(t, root)
	if err := Crash(root, opt, 0); err != nil {
		t.Fatal(err)
	}
	after := manifest(t, root)
	rel, _ := filepath.Rel(root, dir)
	rel = filepath.ToSlash(rel)
	if s := after[rel+"/access.log"].Size; s != 0 {
		t.Errorf("access.log has %d bytes after crash", s)
	}
	for _, name := range []string{"bootstrap.json", "certs/cert-chain.pem", "certs/key.pem", "stats.txt"} {
		if before[rel+"/"+name].Hash == after[rel+"/"+name].Hash {
			t.Errorf("%s unchanged by crash", name)
		}
	}
	if after[rel+"/admin.sock"].Type != "socket" {
		t.Error("admin.sock missing after crash")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "bootstrap.json")); !json.Valid(b) {
		t.Error("bootstrap.json invalid after crash")
	}
	// Other proxies are untouched.
	for p, e := range before {
		if !strings.HasPrefix(p, rel+"/") && after[p] != e {
			t.Errorf("%s changed by crash of proxy 0", p)
		}
	}
	mutate(t, root, opt, 1)
	seqs, _ = Seqs(dir)
	if len(seqs) == 0 || seqs[0] != last+1 {
		t.Errorf("after crash seqs start at %v, want %d", seqs[:min(len(seqs), 1)], last+1)
	}
}

func TestSeqs(t *testing.T) {
	dir := t.TempDir()
	line := func(seq int) string {
		return fmt.Sprintf("[2026-11-22T10:00:00.000Z] seq=%d \"GET / HTTP/1.1\" 200\n", seq)
	}
	files := map[string]string{
		"access.log.10":  line(1),
		"access.log.2":   line(2) + line(3),
		"access.log.1":   line(4) + "garbage without a sequence\n",
		"access.log":     line(5) + line(6) + "[2026-11-22T10:00:00.000Z] seq=7", // torn last line
		"access.log.bak": line(99),
		"access.log.01":  line(98),
		"other.log":      line(97),
	}
	for name, data := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
	}
	got, err := Seqs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 2 3 4 5 6]" {
		t.Errorf("Seqs = %v", got)
	}
	if _, err := Seqs(filepath.Join(dir, "missing")); err == nil {
		t.Error("Seqs of a missing directory succeeded")
	}
}

func TestLongSocketPath(t *testing.T) {
	dir := t.TempDir()
	for len(dir) < 120 {
		dir = filepath.Join(dir, "a-rather-long-directory-name")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.sock")
	if err := makeSocket(path); err != nil {
		t.Fatal(err)
	}
	if !isSocket(path) {
		t.Error("no socket created")
	}
}

// MutateSome changes only the active volumes: idle proxies and the idle
// Consul server keep every file as it was.
func TestMutateSome(t *testing.T) {
	opt := small
	root := generate(t, opt)
	before := manifest(t, root)
	dirs := proxyDirs(t, root)
	err := MutateSome(root, opt, 2, Activity{Proxy: func(i int) bool { return i == 1 }, Server: func(int) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	after := manifest(t, root)
	active, _ := filepath.Rel(root, dirs[1])
	changed := map[string]bool{}
	for _, d := range Diff(before, after, false) {
		changed[d] = true
	}
	if len(changed) == 0 {
		t.Fatal("nothing changed")
	}
	for p, e := range after {
		old, ok := before[p]
		same := ok && old == e
		inActive := strings.HasPrefix(p, active+"/") || p == active
		if !same && !inActive && !strings.HasPrefix(p, stateFileName) {
			t.Errorf("%s changed outside the active proxy %s", p, active)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok && !strings.HasPrefix(p, active+"/") {
			t.Errorf("%s removed outside the active proxy", p)
		}
	}
}
