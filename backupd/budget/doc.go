// Package budget bounds what backupd costs the host it runs on, so that the
// workloads whose volumes it reads (mesh proxies appending and fsyncing
// their access logs) keep their latency (docs/DESIGN.md §3.9):
//
//   - Priority: the process's CPU and I/O scheduling priority (nice value,
//     I/O class, and optionally the SCHED_IDLE CPU class), applied to every
//     thread of the process, so threads created later inherit it. The daemon and the node agent apply
//     Default at start unless configured otherwise.
//   - Budget: per backup, a rate limit on the bytes read from the source
//     (a token bucket that starts empty, so reading N bytes takes at least
//     N / rate) and a limit on the process's CPU time per wall-clock
//     second, enforced by making the readers and the walker wait.
//
// Not guaranteed: the I/O class has effect only under an I/O scheduler
// that honours it (BFQ; mq-deadline orders by class but not by level;
// "none" ignores it), and never for writes the kernel's flusher threads
// issue on the process's behalf. The CPU limit is on the whole process: the
// CPU of anything else running in it (another run of the node agent with
// --max-concurrent above 1, the exporter) counts against it, and work
// already handed on when a wait starts (a chunk being compressed) goes on.
//
// Imports: golang.org/x/sys/unix and golang.org/x/time/rate; no other
// package of the module. Like all of the engine it never imports
// Prometheus, collectors/ or exporter/ (docs/DESIGN.md §2.3).
package budget
