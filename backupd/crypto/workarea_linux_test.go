package crypto

import (
	"syscall"
	"testing"

	"golang.org/x/crypto/argon2"
)

func minorFaults(t *testing.T) int64 {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt
}

// TestPreparedWorkAreaIsNotFaultedIn checks what prepareWorkArea is for:
// Argon2's work area lands on memory already written, so the derivation
// does not take a page fault (and, with other threads running, a TLB
// shootdown) per page. The size is larger than any other test's work
// area, so no memory freed by an earlier test can serve it instead.
func TestPreparedWorkAreaIsNotFaultedIn(t *testing.T) {
	const kib = 48 << 10
	pages := int64(kib * 1024 / 4096)
	prepareWorkArea(kib << 10)
	before := minorFaults(t)
	argon2.IDKey([]byte("pw"), make([]byte, 16), 1, kib, 2, 32)
	faults := minorFaults(t) - before
	t.Logf("%d minor faults for a work area of %d pages", faults, pages)
	if faults > pages/8 {
		t.Errorf("Argon2 took %d page faults on a prepared work area of %d pages; want at most %d", faults, pages, pages/8)
	}
}
