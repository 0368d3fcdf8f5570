package crypto

import "runtime"

// prepareWorkArea makes the next allocation of n bytes land on memory the
// process has already written to, so that Argon2 does not fault its work
// area in while it runs.
//
// Argon2 reads each block of its work area before it first writes it. A
// fresh allocation is untouched memory, so the read maps the kernel's
// shared zero page and the write then copies it and flushes the old
// mapping from the TLB of every CPU running one of the process's threads:
// an inter-processor interrupt per 4 KiB page whenever another goroutine
// is busy, such as a second Argon2 lane or the source scan. On the 2-core
// reference machine a 19 MiB derivation took 57 ms with one lane and
// 106 ms with two; with its work area written first, 41 ms and 34–37 ms.
//
// A buffer of n bytes and some slack is populated with writes (in one
// system call where the kernel has MADV_POPULATE_WRITE, page by page
// otherwise) and freed by a collection; the allocator, which takes the
// lowest free pages that fit, hands the same pages to the next allocation
// of that size and clears them with ordinary writes. The slack keeps that
// so when another goroutine (the backup's source scan) takes a few pages
// of the freed run first. If it does not happen, the derivation is only as
// slow as without this.
func prepareWorkArea(n int) {
	if n < 1<<20 {
		return
	}
	const slack = 2 << 20
	b := make([]byte, n+slack)
	if !populateWrite(b) {
		for i := 0; i < len(b); i += 4096 {
			b[i] = 0
		}
	}
	runtime.KeepAlive(b)
	runtime.GC()
}
