package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/meshbackup/backupd/bench/faults"
	"github.com/meshbackup/backupd/internal/tools"
)

// outageScenario (scenario 3) takes the repository away in the middle of
// each tool's first backup and gives it back:
//
//   - local, as root: the repository on a small tmpfs that fills up
//     mid-backup (ENOSPC), then grows; and on a tmpfs remounted read-only
//     mid-backup (EROFS), then read-write again;
//   - S3 (not borg, which has no S3 backend): the repository in a bucket
//     of a MinIO the scenario starts, SIGKILLed mid-backup and started
//     again on the same address and data the profile's s3Down later.
//
// Evidence per trial: a clean failure or a hang (the run is stopped after
// localHang or s3Hang and the hang recorded), the time from the fault to the
// run's exit, whether the next backup after the repository is back
// succeeds (with or without a human step) and restores exact, and whether
// it resumes instead of storing everything again (the repository's growth
// by the next run against a whole first backup). Every tmpfs is unmounted
// and every MinIO stopped on every path.
type outageScenario struct{}

func (outageScenario) id() string                { return faults.ScenarioOutage }
func (outageScenario) notApplicable(*bed) string { return "" }

// localHang and s3Hang bound a run that does not end after the fault:
// it is then a hang. Both count from the run's start. A local fault
// (ENOSPC, read-only) comes by half the healthy run and lasts until the
// run ends, so the tool gets three healthy runs and the profile's
// failGrace to fail cleanly (every clean failure here came within 3 s of
// the fault; restic on a read-only repository never ends). The S3 outage
// ends by itself, and a tool that rides it out runs slower, so it gets
// ten healthy runs, MinIO's down time and the profile's hangGrace past
// its return.
func (p profile) localHang(healthy time.Duration) time.Duration {
	return p.failGrace + 3*healthy
}

func (p profile) s3Hang(healthy time.Duration) time.Duration {
	return p.s3Down + p.hangGrace + 10*healthy
}

func (outageScenario) run(ctx context.Context, b *bed) (*faults.Cell, error) {
	cell := &faults.Cell{Usage: map[string]faults.Usage{}}
	var detect []float64
	for _, kind := range []string{"enospc", "readonly", "s3"} {
		tr, err := outageTrial(ctx, b, kind, cell)
		if err != nil {
			return nil, err
		}
		if tr.TimeToDetectSeconds != nil {
			detect = append(detect, *tr.TimeToDetectSeconds)
		}
		b.logf("%-32s %s: %s", tr.Point, tr.Outcome, tr.Note)
		cell.Trials = append(cell.Trials, tr)
	}
	if len(detect) > 0 {
		m := detect[0]
		for _, d := range detect {
			m = max(m, d)
		}
		cell.TimeToDetectSeconds = fsecs(m)
	}
	cell.Outcome = faults.Worst(trialOutcomes(cell.Trials)...)
	cell.Verdict = trialsVerdict(cell.Trials)
	for _, t := range cell.Trials {
		if t.Outcome == faults.NotApplicable {
			cell.Verdict += "; " + t.Point + ": " + t.Note
		}
	}
	return cell, nil
}

// outageEvidence is what one outage trial showed.
type outageEvidence struct {
	// succeeded: the run rode the outage out and made a snapshot.
	succeeded bool
	hung      bool
	hangAfter time.Duration // from the fault to the kill of a hung run
	failed    string
	// next is the backup after the repository came back.
	nextFailed string
	humanSteps []string
	restores   []restoreCheck
	// grew is what the next run added to the repository, full what a
	// whole first backup adds.
	grew, full int64
}

func classifyOutage(e outageEvidence) (faults.Outcome, string) {
	var v verdicts
	v.judgeRestores(e.restores)
	if e.hung {
		v.add(faults.NeededHuman, "the backup was still running %s after the fault and had to be killed", e.hangAfter)
	}
	if e.nextFailed != "" {
		v.add(faults.NeededHuman, "the next backup, the repository back, failed: %s", e.nextFailed)
	}
	if len(e.humanSteps) > 0 {
		v.add(faults.NeededHuman, "needed %s", strings.Join(e.humanSteps, ", then "))
	}
	resume := ""
	if e.full > 0 && !e.succeeded {
		resume = fmt.Sprintf("; the next run stored %s, %.0f%% of a whole first backup (%s)", fmtBytes(e.grew), 100*float64(e.grew)/float64(e.full), fmtBytes(e.full))
	}
	switch {
	case len(v.outcomes) > 0:
		v.notes[0] += resume
	case e.succeeded:
		v.add(faults.SurvivedExact, "the backup rode the outage out and restored exact")
	default:
		v.add(faults.RecoveredAuto, "the backup failed cleanly (%s); the next one succeeded with no human step and restored exact%s", e.failed, resume)
	}
	return v.worst()
}

// outageTrial runs one outage of kind during the first backup.
func outageTrial(ctx context.Context, b *bed, kind string, cell *faults.Cell) (faults.Trial, error) {
	healthy := dur(b.base.first)
	tr := faults.Trial{}
	switch kind {
	case "enospc":
		tr.Point = "repository tmpfs full mid-way through the first backup"
	case "readonly":
		tr.Point = "repository remounted read-only once a quarter of the first backup is stored"
	case "s3":
		tr.Point = fmt.Sprintf("MinIO killed at half the first backup, back %s later", b.fr.prof.s3Down)
		if b.tool == "borg" {
			tr.Outcome, tr.Note = faults.NotApplicable, "borg has no S3 backend"
			return tr, nil
		}
		return s3OutageTrial(ctx, b, tr, cell)
	}
	if os.Geteuid() != 0 {
		tr.Outcome, tr.Note = faults.NotApplicable, "mounting a tmpfs needs root"
		return tr, nil
	}
	if err := b.reset(ctx, stateInit); err != nil {
		return tr, err
	}
	repo := b.a.repoDir()
	initBytes := b.states[stateInit].bytes
	full := b.base.firstBytes - initBytes
	size := int64(64<<20) + 4*(initBytes+full)
	if kind == "enospc" {
		size = initBytes + full/2
	}
	size = max(1<<20, (size+4095)/4096*4096)
	mounted, err := tmpfsRepo(ctx, repo, size)
	if mounted {
		defer unmount(repo)
	}
	if err != nil {
		return tr, err
	}
	var e outageEvidence
	e.full = full
	// The fault: the moment the tmpfs is full, or the remount.
	var faultAt time.Time
	var mu sync.Mutex
	setFault := func(t time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if faultAt.IsZero() {
			faultAt = t
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	started := time.Now()
	used := func() int64 {
		var st syscall.Statfs_t
		if syscall.Statfs(repo, &st) != nil {
			return 0
		}
		return int64(st.Blocks-st.Bfree) * st.Bsize
	}
	used0 := used()
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			switch u := used(); kind {
			case "enospc":
				// Full: less room left than a pack or segment needs.
				if size-u < max(1<<20, size/20) {
					setFault(time.Now())
					return
				}
			case "readonly":
				// A quarter of the first backup stored: mid-way,
				// however fast the tool.
				// The remount is refused (busy) while a file is open
				// for writing: tried again at every tick until it
				// takes.
				if u-used0 >= full/4 {
					if err := mountCmd(ctx, "-o", "remount,ro", repo); err == nil {
						setFault(time.Now())
						return
					}
				}
			}
		}
	})
	p, hung, err := b.boundedBackup(ctx, b.src, b.fr.prof.localHang(healthy))
	close(stop)
	wg.Wait()
	if err != nil {
		return tr, err
	}
	exitAt := started.Add(dur(p))
	mu.Lock()
	fault := faultAt
	mu.Unlock()
	if err := judgeOutageRun(b, p, hung, fault, exitAt, &tr, &e); err != nil {
		return tr, err
	}
	if fault.IsZero() && e.succeeded {
		tr.Outcome = faults.NotApplicable
		tr.Note = "the fault could not be injected before the backup ended (a read-only remount is refused while a file is open for writing)"
		return tr, nil
	}
	// Back: room again, writable again.
	opt := "remount,rw,size=" + strconv.FormatInt(int64(64<<20)+8*(initBytes+full), 10)
	if err := mountCmd(ctx, "-o", opt, repo); err != nil {
		return tr, fmt.Errorf("give the repository back: %w", err)
	}
	return tr, afterOutage(ctx, b, e, &tr, cell, func() (int64, error) { return dirSize(repo) })
}

// judgeOutageRun records the failed (or hung, or successful) run.
func judgeOutageRun(b *bed, p *procResult, hung bool, fault, exitAt time.Time, tr *faults.Trial, e *outageEvidence) error {
	e.hung = hung
	if hung && !fault.IsZero() {
		e.hangAfter = exitAt.Sub(fault).Round(time.Second)
	}
	p, snap, err := b.recordBackup(p, nil, b.src, b.srcManifest, "snapshot of the backup during the outage")
	if err != nil {
		return err
	}
	switch {
	case snap != nil:
		e.succeeded = true
	case !hung:
		e.failed = lastLines(p.Failed, 1)
		if !fault.IsZero() {
			tr.TimeToDetectSeconds = fsecs(max(0, exitAt.Sub(fault).Seconds()))
		}
	}
	return nil
}

// afterOutage runs the next backup, the repository back, restores every
// snapshot reported done, and classifies the trial.
func afterOutage(ctx context.Context, b *bed, e outageEvidence, tr *faults.Trial, cell *faults.Cell, size func() (int64, error)) error {
	before, err := size()
	if err != nil {
		return err
	}
	if !e.succeeded {
		p, s, err := b.backupUnlocking(ctx, b.src, b.srcManifest, "backup after the outage", &e.humanSteps)
		if err != nil {
			return err
		}
		if u := cell.Usage[faults.UsageBackup]; p.Usage.WallSeconds > u.WallSeconds {
			cell.Usage[faults.UsageBackup] = p.Usage
		}
		if s == nil {
			e.nextFailed = lastLines(p.Failed, 1)
		}
		after, err := size()
		if err != nil {
			return err
		}
		e.grew = after - before
	}
	for i, s := range b.snaps {
		rc, err := b.restoreFresh(ctx, s, fmt.Sprintf("outage-%d", i))
		if err != nil {
			return err
		}
		if u := cell.Usage[faults.UsageRestore]; rc.Usage.WallSeconds > u.WallSeconds {
			cell.Usage[faults.UsageRestore] = rc.Usage
		}
		e.restores = append(e.restores, rc)
	}
	tr.Outcome, tr.Note = classifyOutage(e)
	tr.HumanSteps = e.humanSteps
	return nil
}

// boundedBackup runs a backup of src stopped after limit: hung is then
// true (the bench's own context still alive).
func (b *bed) boundedBackup(ctx context.Context, src string, limit time.Duration) (p *procResult, hung bool, err error) {
	b.seq++
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	p, err = b.run(rctx, b.a.backupCmd(src, b.seq), 0)
	if err != nil && ctx.Err() == nil && rctx.Err() != nil {
		return p, true, nil
	}
	// Killed by the profile's time limit, shorter than limit: a hang too.
	if err == nil && p.TimedOut {
		return p, true, nil
	}
	return p, false, err
}

// tmpfsRepo puts the repository dir on a new tmpfs of size bytes, with
// its content: mounted is true once the tmpfs is there.
func tmpfsRepo(ctx context.Context, repo string, size int64) (mounted bool, err error) {
	disk := repo + ".disk"
	if err := os.Rename(repo, disk); err != nil {
		return false, fmt.Errorf("move the repository aside: %w", err)
	}
	if err := os.MkdirAll(repo, 0o755); err != nil {
		return false, err
	}
	if err := mountCmd(ctx, "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", repo); err != nil {
		return false, err
	}
	if err := cpA(ctx, disk+"/.", repo); err != nil {
		return true, err
	}
	return true, removeTree(disk)
}

func mountCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "mount", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// unmount unmounts dir, lazily if it is busy.
func unmount(dir string) {
	if err := syscall.Unmount(dir, 0); err != nil {
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
	}
}

// s3OutageTrial is the MinIO outage: a reference first backup into one
// bucket (its duration and size), then the trial's into another, MinIO
// killed at half the reference's duration and started again the
// profile's s3Down later.
func s3OutageTrial(ctx context.Context, b *bed, tr faults.Trial, cell *faults.Cell) (faults.Trial, error) {
	bin, err := tools.Find("minio")
	if err != nil {
		tr.Outcome, tr.Note = faults.NotApplicable, "MinIO is not installed (scripts/install-tools.sh minio)"
		return tr, nil
	}
	dir := filepath.Join(b.dir, "minio")
	if err := removeTree(dir); err != nil {
		return tr, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return tr, err
	}
	creds, err := newS3Creds()
	if err != nil {
		return tr, err
	}
	srv, err := startMinio(ctx, bin, dir, creds)
	if err != nil {
		return tr, err
	}
	defer func() { srv.stop() }()
	client := newS3Client(srv.url(), creds)
	s3bed := func(name string) (*bed, error) {
		if err := createBucket(ctx, client, "fault-"+name); err != nil {
			return nil, err
		}
		a, err := newDriver(b.tool, b.fr.bins[b.tool], filepath.Join(b.dir, "s3home-"+name), &s3Target{endpoint: srv.addr, bucket: "fault-" + name, creds: creds})
		if err != nil {
			return nil, err
		}
		sb := &bed{fr: b.fr, w: b.w, tool: b.tool, dir: b.dir, home: a.homeDir(), src: b.src, srcManifest: b.srcManifest, a: a, states: map[string]*bedState{}}
		p, err := sb.run(ctx, a.initCmd(), 0)
		if err != nil {
			return nil, err
		}
		if !p.ok() {
			return nil, fmt.Errorf("init in MinIO: %s", p.Failed)
		}
		return sb, nil
	}
	size := func(bucket string) func() (int64, error) {
		return func() (int64, error) { return bucketSize(ctx, client, bucket) }
	}
	ref, err := s3bed("ref")
	if err != nil {
		return tr, err
	}
	before, err := bucketSize(ctx, client, "fault-ref")
	if err != nil {
		return tr, err
	}
	p, _, err := ref.backup(ctx, b.src, b.srcManifest, "reference backup", 0)
	if err != nil {
		return tr, err
	}
	if !p.ok() {
		tr.Outcome, tr.Note = faults.NeededHuman, "the reference backup into MinIO failed: "+lastLines(p.Failed, 1)
		return tr, nil
	}
	full, err := bucketSize(ctx, client, "fault-ref")
	if err != nil {
		return tr, err
	}
	healthy := dur(p)
	sb, err := s3bed("trial")
	if err != nil {
		return tr, err
	}
	tr.Point = fmt.Sprintf("MinIO killed at %.2fs of the first backup (healthy %.2fs), back %s later", healthy.Seconds()/2, healthy.Seconds(), b.fr.prof.s3Down)
	var e outageEvidence
	e.full = full - before
	var killedAt time.Time
	var restartErr error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-stop:
			return
		case <-time.After(healthy / 2):
		}
		_ = syscall.Kill(-srv.cmd.Process.Pid, syscall.SIGKILL)
		<-srv.done
		srv.done <- nil
		killedAt = time.Now()
		select {
		case <-ctx.Done():
			return
		case <-time.After(b.fr.prof.s3Down):
		}
		logf, err := os.OpenFile(filepath.Join(dir, "minio.log"), os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			restartErr = err
			return
		}
		defer logf.Close()
		s, err := startMinioAt(ctx, srv.bin, srv.dir, srv.creds, srv.addr, srv.versionOut, logf)
		if err != nil {
			restartErr = err
			return
		}
		srv = s
	})
	p, hung, err := sb.boundedBackup(ctx, b.src, b.fr.prof.s3Hang(healthy))
	exitAt := time.Now()
	close(stop)
	wg.Wait()
	if err != nil {
		return tr, err
	}
	if restartErr != nil {
		return tr, fmt.Errorf("restart MinIO: %w", restartErr)
	}
	if err := judgeOutageRun(sb, p, hung, killedAt, exitAt, &tr, &e); err != nil {
		return tr, err
	}
	if killedAt.IsZero() && e.succeeded {
		tr.Outcome, tr.Note = faults.NotApplicable, "the backup ended before MinIO was killed"
		return tr, nil
	}
	if err := afterOutage(ctx, sb, e, &tr, cell, size("fault-trial")); err != nil {
		return tr, err
	}
	return tr, nil
}
