package budget

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestParseIOClass(t *testing.T) {
	for _, tc := range []struct {
		in    string
		class IOClass
		level int
		ok    bool
	}{
		{"idle", IOIdle, 0, true},
		{"none", IOUnchanged, 0, true},
		{"best-effort", IOBestEffort, 7, true},
		{"best-effort:0", IOBestEffort, 0, true},
		{"best-effort:7", IOBestEffort, 7, true},
		{"best-effort:8", 0, 0, false},
		{"best-effort:-1", 0, 0, false},
		{"realtime", 0, 0, false},
		{"", 0, 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			c, l, err := ParseIOClass(tc.in)
			if (err == nil) != tc.ok || c != tc.class || l != tc.level {
				t.Errorf("ParseIOClass(%q) = %v, %d, %v; want %v, %d, ok %v", tc.in, c, l, err, tc.class, tc.level, tc.ok)
			}
			if tc.ok {
				p := Priority{IO: c, IOLevel: l}
				if c2, l2, _ := ParseIOClass(p.IOString()); c2 != c || l2 != l {
					t.Errorf("IOString %q does not parse back", p.IOString())
				}
			}
		})
	}
	for in, want := range map[string]CPUClass{"idle": CPUIdle, "normal": CPUUnchanged} {
		if c, err := ParseCPUClass(in); err != nil || c != want || (Priority{CPU: c}).CPUString() != in {
			t.Errorf("ParseCPUClass(%q) = %v, %v; CPUString does not give it back", in, c, err)
		}
	}
	for _, in := range []string{"", "batch", "fifo", "IDLE"} {
		if _, err := ParseCPUClass(in); err == nil || !strings.Contains(err.Error(), "want normal") {
			t.Errorf("ParseCPUClass(%q): %v, want an error saying what is accepted", in, err)
		}
	}
	if err := (Priority{Nice: 20}).Validate(); err == nil {
		t.Error("nice 20 accepted")
	}
	if err := (Priority{Nice: -5}).Validate(); err == nil {
		t.Error("nice -5 accepted: backupd must never raise its priority")
	}
}

// The helper process of TestPriorityAppliedToEveryThread: it applies the
// priority in BUDGET_TEST_PRIORITY (nice,io-class[,cpu-class]), then starts threads of
// its own, prints "ready" and waits for its standard input to close.
func init() {
	spec := os.Getenv("BUDGET_TEST_PRIORITY")
	if spec == "" {
		return
	}
	nice, ioc, _ := strings.Cut(spec, ",")
	ioc, cpu, _ := strings.Cut(ioc, ",")
	p := Priority{}
	p.Nice, _ = strconv.Atoi(nice)
	var err error
	if p.IO, p.IOLevel, err = ParseIOClass(ioc); err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	if cpu != "" {
		if p.CPU, err = ParseCPUClass(cpu); err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
	}
	if _, err := Apply(p); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	// Threads started after Apply: each goroutine holds its own.
	var ready sync.WaitGroup
	for range 6 {
		ready.Add(1)
		go func() {
			runtime.LockOSThread()
			ready.Done()
			select {}
		}()
	}
	ready.Wait()
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	os.Exit(0)
}

// TestPriorityAppliedToEveryThread applies a priority in a child process
// and reads every thread's nice value (/proc/PID/task/TID/stat) and I/O
// priority (ioprio_get) from outside: all of them, those the child
// started after Apply too, have it; a priority lower than asked for is
// kept. The I/O priority compared is the one in effect (class "none" is
// best-effort at a level from the nice value).
func TestPriorityAppliedToEveryThread(t *testing.T) {
	// The test itself may run under nice; its children start from there.
	own, err := Nice(syscall.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		spec      string
		startNice int // the child is started this much nicer than the test
		nice      int // as it would be from nice 0
		class     string
		level     int
		cpu       string // the CPU policy every thread has
	}{
		{"default", "10,best-effort:7", 0, 10, "best-effort", 7, "normal"},
		{"idle", "5,idle", 0, 5, "idle", 0, "normal"},
		// Nice 15 already gives best-effort 7: left as it is.
		{"already nicer", "10,best-effort:7", 15, 15, "best-effort", 7, "normal"},
		// The kernel's default: best-effort at (nice + 20) / 5.
		{"io unchanged", "3,none", 0, 3, "best-effort", 4, "normal"},
		// SCHED_IDLE on every thread, the nice value kept.
		{"cpu idle", "10,best-effort:7,idle", 0, 10, "best-effort", 7, "idle"},
		{"cpu normal", "10,best-effort:7,normal", 0, 10, "best-effort", 7, "normal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if want := min(own+tc.startNice, 19); want > tc.nice {
				// Started nicer than the priority asks: kept, and so
				// is the best-effort level it implies, if lower.
				tc.nice = want
				if tc.class == "best-effort" {
					tc.level = max(tc.level, (want+20)/5)
				}
			}
			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			argv := []string{exe, "-test.run=^$"}
			if tc.startNice > 0 {
				argv = append([]string{"nice", "-n", strconv.Itoa(tc.startNice)}, argv...)
			}
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), "BUDGET_TEST_PRIORITY="+tc.spec)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil || line != "ready\n" {
				t.Fatalf("child: %q, %v", line, err)
			}
			tids, err := Threads(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			if len(tids) < 7 {
				t.Fatalf("child has %d threads, want at least 7 (6 started after Apply)", len(tids))
			}
			for _, tid := range tids {
				nice := statNice(t, cmd.Process.Pid, tid)
				class, level, err := IOPriority(tid)
				if err != nil {
					t.Fatal(err)
				}
				if IOClassName(class) == "none" {
					// The kernel derives it from the nice value.
					class, level = ioprioClassBE, (nice+20)/5
				}
				if IOClassName(class) != "best-effort" {
					level = 0
				}
				cpu, err := CPUPolicy(tid)
				if err != nil {
					t.Fatal(err)
				}
				if nice != tc.nice || IOClassName(class) != tc.class || level != tc.level || cpu != tc.cpu {
					t.Errorf("thread %d: nice %d, I/O %s %d, CPU %s; want nice %d, I/O %s %d, CPU %s", tid, nice, IOClassName(class), level, cpu, tc.nice, tc.class, tc.level, tc.cpu)
				}
			}
		})
	}
}

// statNice reads the nice value of a thread from /proc/PID/task/TID/stat
// (field 19; the command name in field 2 may hold spaces and parentheses).
func statNice(t *testing.T, pid, tid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, err := strconv.Atoi(f[19-3])
	if err != nil {
		t.Fatalf("stat of thread %d: %q: %v", tid, s, err)
	}
	return n
}
