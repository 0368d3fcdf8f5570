package s3

import (
	"testing"
	"time"
)

// NewUnchecked returns a backend without the checks of Open, for tests of
// how object requests report what Open would have refused.
func NewUnchecked(t testing.TB, opt Options) *Backend {
	t.Helper()
	b, err := newBackend(t.Context(), opt)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// AgeClockSample makes the clock sample of b d older, as if it had been
// taken d earlier.
func AgeClockSample(b *Backend, d time.Duration) {
	b.clock.mu.Lock()
	defer b.clock.mu.Unlock()
	b.clock.at = b.clock.at.Add(-d)
	b.clock.date = b.clock.date.Add(-d)
}
