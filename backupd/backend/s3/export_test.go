package s3

import "testing"

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
