// Package workload generates deterministic "service-mesh persistent volume"
// trees: per-proxy Envoy/Istio sidecar state (access logs with rotation,
// config and stats dumps, certificates, a Kubernetes projected volume, a unix
// socket, ...) and per-Consul-server state (raft.db with in-place page writes,
// raft snapshots, serf snapshots).
//
// The trees are used as test input and oracle for the backup engine, by the
// benchmark and by the demo. Everything is a pure function of Options and of
// the number of Mutate steps applied (plus Crash calls and Appender use), so a
// test can regenerate or compare a tree at will. The package prints nothing.
//
// Layout under root:
//
//	proxies/<ns>-<app>-<i>/access.log, access.log.1 .. access.log.5
//	proxies/<ns>-<app>-<i>/config_dump.json, stats.txt, bootstrap.json
//	proxies/<ns>-<app>-<i>/certs/{cert-chain,key,root-cert}.pem
//	proxies/<ns>-<app>-<i>/serviceaccount/{..<timestamp>/,..data,ca.crt,namespace,token}
//	proxies/<ns>-<app>-<i>/xds/eds/*.json, tap/trace-<n>.json (5% of proxies)
//	proxies/<ns>-<app>-<i>/admin.sock (unix socket), ready (empty), envoy.env (0600), bin/healthcheck.sh (0755)
//	consul/server-<i>/raft/raft.db, raft/snapshots/<term>-<index>-<ms>/{state.bin,meta.json}
//	consul/server-<i>/serf/local.snapshot, serf/remote.snapshot, node-id, ...
//	.workload-state.json (generator state, excluded from Manifest)
//
// Imports: the standard library and BLAKE3; no other module package (the
// engine's tests import it, never the other way; docs/DESIGN.md §2.3).
package workload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Options selects the shape and size of a volume set. The zero value of each
// field selects its default.
type Options struct {
	// Proxies is the number of sidecar proxy directories (default 20).
	Proxies int
	// ConsulServers is the number of Consul server directories (default 3).
	ConsulServers int
	// Seed selects the pseudo-random content; equal Options give equal trees.
	Seed uint64
	// Scale multiplies the size of the big files: raft.db and raft
	// snapshots, access-log history and per-step log volume, config_dump.json
	// and stats.txt (each with a small floor). 1.0 (the default) gives the
	// design sizes; small files (bootstrap, PEMs, projected volume, xDS
	// files, tap traces) are never scaled.
	Scale float64
	// LogRotateBytes is the size past which access.log is rotated
	// (default 10 MiB).
	LogRotateBytes int64
}

const (
	defaultProxies   = 20
	defaultConsul    = 3
	defaultRotate    = 10 << 20
	keptGenerations  = 5
	stateFileName    = ".workload-state.json"
	stateVersion     = 1
	minuteMs         = 60_000
	hourMs           = 60 * minuteMs
	accessLogName    = "access.log"
	pageSize         = 4096
	maxLogHistoryGen = 5.5 // at most this many LogRotateBytes of history are generated
)

// startClockMs is the simulated wall clock at generation time.
var startClockMs = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC).UnixMilli()

func (o Options) normalize() (Options, error) {
	switch {
	case o.Proxies < 0:
		return o, fmt.Errorf("workload: negative Proxies %d", o.Proxies)
	case o.ConsulServers < 0:
		return o, fmt.Errorf("workload: negative ConsulServers %d", o.ConsulServers)
	case o.Scale < 0 || math.IsNaN(o.Scale) || math.IsInf(o.Scale, 0):
		return o, fmt.Errorf("workload: invalid Scale %v", o.Scale)
	case o.LogRotateBytes < 0:
		return o, fmt.Errorf("workload: negative LogRotateBytes %d", o.LogRotateBytes)
	}
	if o.Proxies == 0 {
		o.Proxies = defaultProxies
	}
	if o.ConsulServers == 0 {
		o.ConsulServers = defaultConsul
	}
	if o.Scale == 0 {
		o.Scale = 1
	}
	if o.LogRotateBytes == 0 {
		o.LogRotateBytes = defaultRotate
	}
	return o, nil
}

// scaled returns base*Scale bytes, at least floor.
func scaled(opt Options, base float64, floor int) int {
	n := int(base * opt.Scale)
	if n < floor {
		n = floor
	}
	return n
}

// proxyInfo is the static (seed-derived) description of one proxy.
type proxyInfo struct {
	idx      int
	ns, app  string
	dir      string // slash path relative to root
	pod      string
	ip       string
	heavy    bool    // gateway with a busy access log
	tap      bool    // has tap traces
	class    float64 // size class in [0,1): drives config/stats sizes
	rate     float64 // access-log lines per simulated minute at Scale 1
	ageMin   float64 // pod age at generation time, minutes
	clusters int     // upstream clusters in the stats dump
}

func (p *proxyInfo) idx64() uint64 { return uint64(p.idx) }

// chooseSet returns a deterministic set of k indices out of n.
func chooseSet(n, k int, seed uint64) map[int]bool {
	idx := make([]int, n)
	keys := make([]uint64, n)
	for i := range idx {
		idx[i] = i
		keys[i] = mix(seed ^ uint64(i))
	}
	sort.Slice(idx, func(a, b int) bool { return keys[idx[a]] < keys[idx[b]] })
	set := make(map[int]bool, k)
	for _, i := range idx[:min(k, n)] {
		set[i] = true
	}
	return set
}

func layout(opt Options) []proxyInfo {
	n := opt.Proxies
	heavy := chooseSet(n, int(math.Round(0.1*float64(n))), seedOf(opt.Seed, tagLayout, 1))
	tap := chooseSet(n, max(1, int(math.Round(0.05*float64(n)))), seedOf(opt.Seed, tagLayout, 2))
	ps := make([]proxyInfo, n)
	for i := range ps {
		r := newRand(opt.Seed, tagLayout, uint64(i))
		p := &ps[i]
		p.idx = i
		p.heavy = heavy[i]
		p.tap = tap[i]
		if p.heavy {
			p.ns, p.app = "gateways", pick(r, gatewayNames)
			p.rate = betweenF(r, 100, 500)
		} else {
			p.ns, p.app = pick(r, namespaces), pick(r, serviceNames)
			p.rate = betweenF(r, 3, 20)
		}
		p.ageMin = betweenF(r, 30, 180)
		p.class = r.Float64()
		p.dir = fmt.Sprintf("proxies/%s-%s-%d", p.ns, p.app, i)
		p.pod = fmt.Sprintf("%s-%s-%s", p.app, string(appendHex(nil, r, 10)), string(appendHex(nil, r, 5)))
		p.ip = string(appendIP(nil, r, 10))
		// Enough upstream clusters for stats.txt to reach its target size
		// (the per-cluster cost was measured on genStats output).
		for est, target := 3200, statsBytes(opt, p); est < target; p.clusters++ {
			est += 77*len(upstreamFor(opt.Seed, i, p.clusters).cluster()) + 5450
		}
		p.clusters = max(p.clusters, 1)
	}
	return ps
}

// Sizes of the per-proxy big files.
func configDumpBytes(opt Options, p *proxyInfo) int {
	return scaled(opt, 1.5e6+1.5e6*math.Pow(p.class, 10), 8<<10)
}
func statsBytes(opt Options, p *proxyInfo) int {
	return scaled(opt, 0.1e6+1.88e6*math.Pow(p.class, 10), 2<<10)
}

// state is persisted in root/.workload-state.json.
type state struct {
	Version int           `json:"version"`
	Options Options       `json:"options"`
	Step    int64         `json:"step"`     // Mutate steps applied so far
	ClockMs int64         `json:"clock_ms"` // simulated clock (Unix ms)
	Proxies []proxyState  `json:"proxies"`
	Consul  []serverState `json:"consul"`
}

type proxyState struct {
	Dir          string `json:"dir"`
	NextSeq      uint64 `json:"next_seq"`
	StatsEpochMs int64  `json:"stats_epoch_ms"`
	CertGen      int    `json:"cert_gen"`
	CertDueMs    int64  `json:"cert_due_ms"`
	TokenGen     int    `json:"token_gen"`
	TokenDueMs   int64  `json:"token_due_ms"`
	Crashes      int    `json:"crashes"`
}

type serverState struct {
	Dir         string `json:"dir"`
	Term        uint64 `json:"term"`
	Index       uint64 `json:"index"`
	Txid        uint64 `json:"txid"`
	SnapDueStep int64  `json:"snap_due_step"`
	SerfClock   uint64 `json:"serf_clock"`
}

// stateMu serialises read-modify-write cycles of state files in this process.
var stateMu sync.Mutex

func loadState(root string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(root, stateFileName))
	if err != nil {
		return nil, fmt.Errorf("workload: %s is not a generated volume set: %w", root, err)
	}
	st := new(state)
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("workload: bad state file: %w", err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("workload: state version %d, want %d", st.Version, stateVersion)
	}
	return st, nil
}

func saveState(root string, st *state) error {
	b, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(root, stateFileName), append(b, '\n'), 0o644)
}

// checkState verifies that opt describes the tree recorded in st.
func checkState(st *state, opt Options) error {
	g := st.Options
	if g.Proxies != opt.Proxies || g.ConsulServers != opt.ConsulServers || g.Seed != opt.Seed {
		return fmt.Errorf("workload: options (proxies=%d consul=%d seed=%d) do not match the generated set (proxies=%d consul=%d seed=%d)",
			opt.Proxies, opt.ConsulServers, opt.Seed, g.Proxies, g.ConsulServers, g.Seed)
	}
	if len(st.Proxies) != g.Proxies || len(st.Consul) != g.ConsulServers {
		return errors.New("workload: corrupt state file")
	}
	return nil
}

// Generate creates a fresh volume set under root (root must be empty or
// absent). The result is deterministic for a given Options: two trees
// generated with equal Options have equal Manifests. Generation uses up to
// GOMAXPROCS goroutines.
func Generate(root string, opt Options) error {
	opt, err := opt.normalize()
	if err != nil {
		return err
	}
	if err := checkEmpty(root); err != nil {
		return err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"proxies", "consul"} {
		if err := mkdir(filepath.Join(root, d)); err != nil {
			return err
		}
	}
	ps := layout(opt)
	st := &state{Version: stateVersion, Options: opt, ClockMs: startClockMs,
		Proxies: make([]proxyState, opt.Proxies), Consul: make([]serverState, opt.ConsulServers)}
	// Servers first: their raft.db files are the biggest single jobs.
	nTasks := opt.ConsulServers + opt.Proxies
	err = parallel(nTasks, func(t int) error {
		if t < opt.ConsulServers {
			return genServer(root, opt, t, &st.Consul[t], st.ClockMs)
		}
		i := t - opt.ConsulServers
		return genProxy(root, opt, &ps[i], &st.Proxies[i], st.ClockMs)
	})
	if err != nil {
		return err
	}
	return saveState(root, st)
}

func checkEmpty(root string) error {
	fi, err := os.Stat(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("workload: %s is not a directory", root)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("workload: %s is not empty", root)
	}
	return nil
}

// parallel runs fn(0..n-1) on up to GOMAXPROCS goroutines and returns the
// error of the lowest failing index.
func parallel(n int, fn func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				errs[i] = fn(i)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
