package workload

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const (
	configRewritePct = 10 // chance per proxy and step of an xDS push (config dump rewrite)
	edsChurnPct      = 30 // chance per proxy and step of endpoint churn in xds/eds
	tapPct           = 25 // chance per tap proxy and step of a new tap trace
	tapKept          = 20
)

// Mutate applies steps steps of realistic activity to the volume set at root,
// which must have been generated with opt (Scale and LogRotateBytes may
// differ). One step is one minute of simulated time: every proxy appends to
// its access log (rotating it past LogRotateBytes) and rewrites stats.txt
// (temp file + rename); about 10% of proxies get a config_dump.json rewrite
// with 1-5% of its bytes changed (temp+rename) and about 30% rewrite a few
// xds/eds files; tap proxies sometimes write a new trace and drop old ones;
// PEMs are reissued about every 12 simulated hours (temp+rename) and the
// projected service-account volume is refreshed about every 45 minutes
// (kubelet atomic-writer symlink swap). Each Consul server gets in-place
// 4 KiB page writes in raft.db (occasionally growing it), serf snapshot
// appends and, every 20-40 steps, a new raft snapshot with
// the oldest of the then three removed. bootstrap.json is never touched.
//
// The result is deterministic for (root state, opt, step counter): Mutate(n)
// gives the same tree as n calls of Mutate(1). The state (step counter,
// simulated clock, next seq numbers, ...) is kept in root/.workload-state.json.
func Mutate(root string, opt Options, steps int) error {
	return MutateSome(root, opt, steps, Activity{})
}

// Activity selects the volumes that are active in MutateSome steps; a nil
// function selects all of its kind. Indexes are proxy numbers (in the
// order of generation) and Consul server numbers.
type Activity struct {
	Proxy  func(i int) bool
	Server func(i int) bool
}

// MutateSome is Mutate with only the volumes that act selects active: the
// others keep their files untouched for those steps (an idle proxy, a
// Consul server with no commits), while the simulated clock still moves
// on for all of them.
func MutateSome(root string, opt Options, steps int, act Activity) error {
	opt, err := opt.normalize()
	if err != nil {
		return err
	}
	if steps < 0 {
		return fmt.Errorf("workload: negative steps %d", steps)
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	st, err := loadState(root)
	if err != nil {
		return err
	}
	if err := checkState(st, opt); err != nil {
		return err
	}
	if steps == 0 {
		return nil
	}
	ps := layout(opt)
	nsrv := len(st.Consul)
	err = parallel(nsrv+len(ps), func(t int) error {
		if t < nsrv {
			if act.Server != nil && !act.Server(t) {
				return nil
			}
			return mutateServer(root, opt, t, &st.Consul[t], st.Step, st.ClockMs, steps)
		}
		i := t - nsrv
		if act.Proxy != nil && !act.Proxy(i) {
			return nil
		}
		return mutateProxy(root, opt, &ps[i], &st.Proxies[i], st.Step, st.ClockMs, steps)
	})
	if err != nil {
		return err
	}
	st.Step += int64(steps)
	st.ClockMs += int64(steps) * minuteMs
	return saveState(root, st)
}

func mutateProxy(root string, opt Options, p *proxyInfo, ps *proxyState, step0, clock0 int64, steps int) error {
	dir := filepath.Join(root, filepath.FromSlash(ps.Dir))
	lw, err := openLog(dir, opt.LogRotateBytes)
	if err != nil {
		return err
	}
	g := &logGen{p: p, seq: nextSeq(dir, ps.NextSeq)}
	var buf []byte
	for s := 1; s <= steps; s++ {
		step := uint64(step0) + uint64(s)
		clock := clock0 + int64(s)*minuteMs
		r := newRand(opt.Seed, tagStep, uint64(p.idx), step)

		g.r = newRand(opt.Seed, tagLog, uint64(p.idx), step)
		g.ms, g.stop = float64(clock-minuteMs), float64(clock)
		g.trace = g.trace[:0]
		if buf, err = appendStepLogs(lw, g, r, opt, p, buf); err != nil {
			break
		}
		if err = writeFileAtomic(filepath.Join(dir, "stats.txt"), genStats(opt, p, clock, ps.StatsEpochMs), 0o644); err != nil {
			break
		}
		if r.IntN(100) < configRewritePct {
			if err = mutateConfigFile(filepath.Join(dir, "config_dump.json"), opt, p, step); err != nil {
				break
			}
		}
		if r.IntN(100) < edsChurnPct {
			if err = churnEDS(filepath.Join(dir, "xds", "eds"), opt, p, step, clock, between(r, 1, 3)); err != nil {
				break
			}
		}
		if p.tap && r.IntN(100) < tapPct {
			if err = addTap(filepath.Join(dir, "tap"), opt, p, step, clock); err != nil {
				break
			}
		}
		if clock >= ps.CertDueMs {
			ps.CertGen++
			if err = writeCerts(dir, opt, p, ps.CertGen, true); err != nil {
				break
			}
			ps.CertDueMs = clock + int64(betweenF(r, 11*hourMs, 13*hourMs))
		}
		if clock >= ps.TokenDueMs {
			ps.TokenGen++
			if err = writeProjected(dir, opt, p, ps.TokenGen, clock); err != nil {
				break
			}
			ps.TokenDueMs = clock + int64(betweenF(r, 40*minuteMs, 50*minuteMs))
		}
	}
	ps.NextSeq = g.seq
	return errors.Join(err, lw.close())
}

func mutateConfigFile(path string, opt Options, p *proxyInfo, step uint64) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, mutateConfigDump(data, newRand(opt.Seed, tagConfigMut, uint64(p.idx), step)), 0o644)
}

func churnEDS(dir string, opt Options, p *proxyInfo, step uint64, clock int64, n int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var names []string
	for _, e := range ents {
		if _, ok := parseEDSName(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return nil
	}
	r := newRand(opt.Seed, tagEDSMut, uint64(p.idx), step)
	for i := 0; i < n; i++ {
		name := names[r.IntN(len(names))]
		u, _ := parseEDSName(name)
		if err := writeFileAtomic(filepath.Join(dir, name), genEDS(r, u, clock), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func addTap(dir string, opt Options, p *proxyInfo, step uint64, clock int64) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var ns []int
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), "trace-")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSuffix(s, ".json")); err == nil {
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	next := 1
	if len(ns) > 0 {
		next = ns[len(ns)-1] + 1
	}
	data := genTap(newRand(opt.Seed, tagTap, uint64(p.idx), uint64(next), step), opt.Seed, p, clock)
	if err := writeFile(filepath.Join(dir, tapName(next)), data, 0o644); err != nil {
		return err
	}
	for len(ns)+1 > tapKept {
		if err := os.Remove(filepath.Join(dir, tapName(ns[0]))); err != nil {
			return err
		}
		ns = ns[1:]
	}
	return nil
}

func mutateServer(root string, opt Options, i int, ss *serverState, step0, clock0 int64, steps int) error {
	dir := filepath.Join(root, filepath.FromSlash(ss.Dir))
	for s := 1; s <= steps; s++ {
		step := step0 + int64(s)
		clock := clock0 + int64(s)*minuteMs
		r := newRand(opt.Seed, tagRaftStep, uint64(i), uint64(step))
		ss.Index += uint64(between(r, 50, 300))
		if r.IntN(500) == 0 {
			ss.Term++
		}
		ctx := &raftCtx{server: i, term: ss.Term, index: ss.Index, ms: clock, seed: opt.Seed}
		if err := mutateRaftDB(filepath.Join(dir, "raft", "raft.db"), opt, r, ctx, ss); err != nil {
			return err
		}
		if err := mutateSerf(filepath.Join(dir, "serf", "local.snapshot"), r, ss); err != nil {
			return err
		}
		if r.IntN(10) < 3 {
			if err := mutateSerf(filepath.Join(dir, "serf", "remote.snapshot"), r, ss); err != nil {
				return err
			}
		}
		if step >= ss.SnapDueStep {
			if err := writeSnapshot(filepath.Join(dir, "raft", "snapshots"), opt, ctx, ss.Term, ss.Index, clock); err != nil {
				return err
			}
			ss.SnapDueStep = step + int64(between(r, 20, 40))
		}
	}
	return nil
}

// Crash simulates a crash and restart of the container of proxy index proxy
// (in [0, Proxies)) at the current simulated time: bootstrap.json is
// rewritten in place with new content, access.log is truncated to 0 bytes
// (later lines continue the seq numbering, so the lost lines show up as a
// gap), the PEMs are reissued in place, counters in stats.txt restart from
// zero and admin.sock is recreated.
func Crash(root string, opt Options, proxy int) error {
	opt, err := opt.normalize()
	if err != nil {
		return err
	}
	stateMu.Lock()
	defer stateMu.Unlock()
	st, err := loadState(root)
	if err != nil {
		return err
	}
	if err := checkState(st, opt); err != nil {
		return err
	}
	if proxy < 0 || proxy >= len(st.Proxies) {
		return fmt.Errorf("workload: proxy %d out of range [0,%d)", proxy, len(st.Proxies))
	}
	p := layout(opt)[proxy]
	ps := &st.Proxies[proxy]
	dir := filepath.Join(root, filepath.FromSlash(ps.Dir))
	clock := st.ClockMs
	ps.NextSeq = nextSeq(dir, ps.NextSeq)
	ps.Crashes++
	r := newRand(opt.Seed, tagCrash, uint64(proxy), uint64(ps.Crashes))
	if err := writeFile(filepath.Join(dir, "bootstrap.json"), genBootstrap(opt, &p, ps.Crashes, clock), 0o644); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, accessLogName), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	ps.CertGen++
	if err := writeCerts(dir, opt, &p, ps.CertGen, false); err != nil {
		return err
	}
	ps.CertDueMs = clock + int64(betweenF(r, 11*hourMs, 13*hourMs))
	ps.StatsEpochMs = clock
	if err := writeFileAtomic(filepath.Join(dir, "stats.txt"), genStats(opt, &p, clock, clock), 0o644); err != nil {
		return err
	}
	if err := makeSocket(filepath.Join(dir, "admin.sock")); err != nil {
		return err
	}
	return saveState(root, st)
}
