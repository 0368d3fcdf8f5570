package budget

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// IOClass is an I/O scheduling class of ioprio_set(2).
type IOClass int

// The I/O classes a Priority may ask for. Real time is not offered: it
// would raise backupd above the workloads it must not disturb.
const (
	// IOUnchanged leaves the class as it is (by default the kernel
	// derives a best-effort level from the nice value).
	IOUnchanged IOClass = iota
	// IOBestEffort is the best-effort class at Priority.IOLevel.
	IOBestEffort
	// IOIdle gets disk time only when no other process wants it.
	IOIdle
)

// The kernel's ioprio encoding (include/uapi/linux/ioprio.h).
const (
	ioprioWhoProcess = 1
	ioprioClassShift = 13
	ioprioClassNone  = 0
	ioprioClassRT    = 1
	ioprioClassBE    = 2
	ioprioClassIdle  = 3
)

// CPUClass is a CPU scheduling policy of sched_setattr(2).
type CPUClass int

// The CPU classes a Priority may ask for.
const (
	// CPUUnchanged leaves the policy as it is (normally SCHED_OTHER, the
	// nice value weighing the share).
	CPUUnchanged CPUClass = iota
	// CPUIdle is SCHED_IDLE: backupd runs on CPU time no other task
	// wants, and a task of the normal policy that wakes up takes the CPU
	// from it at once instead of waiting out its time slice
	// (docs/DESIGN.md §3.9).
	CPUIdle
)

// Priority is the scheduling priority backupd runs at.
type Priority struct {
	// Nice is the nice value, 1 (slightly below normal) to 19 (lowest);
	// 0 leaves it as it is.
	Nice int
	// IO is the I/O class; IOLevel the best-effort level, 0 (highest)
	// to 7 (lowest).
	IO      IOClass
	IOLevel int
	// CPU is the CPU class.
	CPU CPUClass
}

// Default is the priority of the daemon and the node agent unless
// configured otherwise: nice 10 and I/O best-effort 7, the lowest level
// that still guarantees progress (docs/DESIGN.md §3.9 says why not idle).
var Default = Priority{Nice: 10, IO: IOBestEffort, IOLevel: 7}

// Off changes nothing.
var Off = Priority{}

// String says what p sets, as the config reference writes it.
func (p Priority) String() string {
	if p == Off {
		return "off"
	}
	if p.CPU == CPUIdle {
		return fmt.Sprintf("nice %d, I/O %s, CPU idle", p.Nice, p.IOString())
	}
	return fmt.Sprintf("nice %d, I/O %s", p.Nice, p.IOString())
}

// CPUString is p's CPU class as ParseCPUClass reads it.
func (p Priority) CPUString() string {
	if p.CPU == CPUIdle {
		return "idle"
	}
	return "normal"
}

// ParseCPUClass reads a CPU class: "idle" (SCHED_IDLE) or "normal"
// (unchanged).
func ParseCPUClass(s string) (CPUClass, error) {
	switch s {
	case "idle":
		return CPUIdle, nil
	case "normal":
		return CPUUnchanged, nil
	}
	return 0, fmt.Errorf("%q is not a CPU class: want normal (the nice value alone) or idle (SCHED_IDLE: only CPU time no other task wants)", s)
}

// IOString is p's I/O class as ParseIOClass reads it.
func (p Priority) IOString() string {
	switch p.IO {
	case IOBestEffort:
		return fmt.Sprintf("best-effort:%d", p.IOLevel)
	case IOIdle:
		return "idle"
	}
	return "none"
}

// ParseIOClass reads an I/O class: "idle", "best-effort" (level 7),
// "best-effort:N" (N from 0 to 7), or "none" (unchanged).
func ParseIOClass(s string) (IOClass, int, error) {
	switch s {
	case "idle":
		return IOIdle, 0, nil
	case "none":
		return IOUnchanged, 0, nil
	case "best-effort":
		return IOBestEffort, 7, nil
	}
	if lv, ok := strings.CutPrefix(s, "best-effort:"); ok {
		if n, err := strconv.Atoi(lv); err == nil && n >= 0 && n <= 7 {
			return IOBestEffort, n, nil
		}
	}
	return 0, 0, fmt.Errorf("%q is not an I/O class: want idle, best-effort, best-effort:N (N from 0, highest, to 7, lowest) or none", s)
}

// Validate reports a value out of range.
func (p Priority) Validate() error {
	switch {
	case p.Nice < 0 || p.Nice > 19:
		return fmt.Errorf("nice %d: want 0 (unchanged) to 19 (lowest); backupd never raises its priority", p.Nice)
	case p.IO == IOBestEffort && (p.IOLevel < 0 || p.IOLevel > 7):
		return fmt.Errorf("best-effort level %d: want 0 to 7", p.IOLevel)
	case p.IO < IOUnchanged || p.IO > IOIdle:
		return fmt.Errorf("unknown I/O class %d", p.IO)
	case p.CPU < CPUUnchanged || p.CPU > CPUIdle:
		return fmt.Errorf("unknown CPU class %d", p.CPU)
	}
	return nil
}

// Apply sets p on every thread of the process. Linux keeps the nice value
// and the I/O priority per thread, and a new thread inherits its creator's,
// so Apply goes over /proc/self/task until a pass finds no thread it has
// not set: threads the Go runtime starts afterwards inherit p. Call it
// early, before the process starts its work. Apply never raises a
// priority: a thread already nicer, or at a lower I/O class or level (set
// by whoever started the process), keeps its own. It returns how many
// threads it went over.
func Apply(p Priority) (threads int, err error) {
	if err := p.Validate(); err != nil {
		return 0, err
	}
	if p == Off {
		return 0, nil
	}
	done := map[int]bool{}
	for {
		tids, err := Threads(os.Getpid())
		if err != nil {
			return len(done), err
		}
		fresh := 0
		for _, tid := range tids {
			if done[tid] {
				continue
			}
			done[tid], fresh = true, fresh+1
			if err := applyThread(tid, p); err != nil && !errors.Is(err, syscall.ESRCH) {
				return len(done), fmt.Errorf("set priority of thread %d: %w", tid, err)
			}
		}
		if fresh == 0 {
			return len(done), nil
		}
	}
}

// applyThread sets p on one thread (ESRCH: it has exited).
func applyThread(tid int, p Priority) error {
	nice, err := Nice(tid)
	if err != nil {
		return err
	}
	if p.Nice > nice {
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, p.Nice); err != nil {
			return fmt.Errorf("nice %d: %w", p.Nice, err)
		}
		nice = p.Nice
	}
	if p.CPU == CPUIdle {
		if err := idleThread(tid, nice); err != nil {
			return err
		}
	}
	if p.IO == IOUnchanged {
		return nil
	}
	class, level, err := IOPriority(tid)
	if err != nil {
		return err
	}
	if class == ioprioClassNone {
		// The kernel's default: best-effort at a level from the nice value.
		class, level = ioprioClassBE, (nice+20)/5
	}
	var v int
	switch {
	case class == ioprioClassIdle:
		return nil // already as low as it gets
	case p.IO == IOIdle:
		v = ioprioClassIdle << ioprioClassShift
	case class == ioprioClassBE && level >= p.IOLevel:
		return nil
	default:
		v = ioprioClassBE<<ioprioClassShift | p.IOLevel
	}
	if _, _, e := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), uintptr(v)); e != 0 {
		return fmt.Errorf("I/O class %s: %w", p.IOString(), e)
	}
	return nil
}

// idleThread puts thread tid in SCHED_IDLE, keeping its nice value. Only
// a thread of the normal or batch policy is changed: one already idle, or
// in a real-time or deadline policy someone chose for it, keeps its own.
func idleThread(tid, nice int) error {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return fmt.Errorf("get CPU policy: %w", err)
	}
	if attr.Policy != unix.SCHED_NORMAL && attr.Policy != unix.SCHED_BATCH {
		return nil
	}
	set := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE, Nice: int32(nice)}
	if err := unix.SchedSetAttr(tid, set, 0); err != nil {
		return fmt.Errorf("CPU class idle: %w", err)
	}
	return nil
}

// CPUPolicy returns the CPU scheduling policy of thread tid: "normal",
// "batch", "idle", "fifo", "rr" or "deadline".
func CPUPolicy(tid int) (string, error) {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return "", fmt.Errorf("get CPU policy: %w", err)
	}
	switch attr.Policy {
	case unix.SCHED_NORMAL:
		return "normal", nil
	case unix.SCHED_BATCH:
		return "batch", nil
	case unix.SCHED_IDLE:
		return "idle", nil
	case unix.SCHED_FIFO:
		return "fifo", nil
	case unix.SCHED_RR:
		return "rr", nil
	case unix.SCHED_DEADLINE:
		return "deadline", nil
	}
	return "policy " + strconv.Itoa(int(attr.Policy)), nil
}

// Threads lists the thread ids of process pid (from /proc/PID/task).
func Threads(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// Nice returns the nice value of thread tid.
func Nice(tid int) (int, error) {
	// The raw system call returns 20 - nice, to stay positive.
	v, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return 0, fmt.Errorf("get nice value: %w", err)
	}
	return 20 - v, nil
}

// IOPriority returns the raw I/O class (0 none, 1 real time, 2
// best-effort, 3 idle) and level of thread tid.
func IOPriority(tid int) (class, level int, err error) {
	v, _, e := unix.Syscall(unix.SYS_IOPRIO_GET, ioprioWhoProcess, uintptr(tid), 0)
	if e != 0 {
		return 0, 0, fmt.Errorf("get I/O priority: %w", e)
	}
	return int(v) >> ioprioClassShift, int(v) & (1<<ioprioClassShift - 1), nil
}

// IOClassName names a raw I/O class as IOPriority returns it.
func IOClassName(class int) string {
	switch class {
	case ioprioClassNone:
		return "none"
	case ioprioClassRT:
		return "realtime"
	case ioprioClassBE:
		return "best-effort"
	case ioprioClassIdle:
		return "idle"
	}
	return "class " + strconv.Itoa(class)
}
