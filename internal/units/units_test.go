package units

import "testing"

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{1536, "1.5 KiB"},
		{1 << 20, "1.0 MiB"},
		{3<<20 + 1<<19, "3.5 MiB"},
		{1<<30 - 1, "1024.0 MiB"},
		{1 << 30, "1.00 GiB"},
		{1138 << 20, "1.11 GiB"},
		{-5, "-5 B"},
	} {
		if got := Bytes(tc.n); got != tc.want {
			t.Errorf("Bytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
		if tc.n >= 0 {
			if got := Bytes(uint64(tc.n)); got != tc.want {
				t.Errorf("Bytes(uint64 %d) = %q, want %q", tc.n, got, tc.want)
			}
		}
	}
}
