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

func TestParseBytesAndRate(t *testing.T) {
	for _, tc := range []struct {
		in      string
		rate    bool
		want    int64
		wantErr bool
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "512B", want: 512},
		{in: "512KiB", want: 512 << 10},
		{in: "1.5 GiB", want: 3 << 29},
		{in: "50mib", want: 50 << 20},
		{in: "10MB", want: 10e6},
		{in: "2kB", want: 2000},
		{in: "1TiB", want: 1 << 40},
		{in: "", wantErr: true},
		{in: "MiB", wantErr: true},
		{in: "-1MiB", wantErr: true},
		{in: "1e6", wantErr: true},
		{in: "NaN", wantErr: true},
		{in: "Inf", wantErr: true},
		{in: "5 parsecs", wantErr: true},
		{in: "50MiB/s", rate: true, want: 50 << 20},
		{in: "1.5 GB/s", rate: true, want: 1.5e9},
		{in: "100/s", rate: true, want: 100},
		{in: "50MiB", rate: true, wantErr: true},
		{in: "0MiB/s", rate: true, wantErr: true},
		{in: "fast/s", rate: true, wantErr: true},
	} {
		parse, name := ParseBytes, "ParseBytes"
		if tc.rate {
			parse, name = ParseRate, "ParseRate"
		}
		got, err := parse(tc.in)
		switch {
		case tc.wantErr && err == nil:
			t.Errorf("%s(%q) = %d, want an error", name, tc.in, got)
		case !tc.wantErr && err != nil:
			t.Errorf("%s(%q): %v", name, tc.in, err)
		case !tc.wantErr && got != tc.want:
			t.Errorf("%s(%q) = %d, want %d", name, tc.in, got, tc.want)
		}
	}
}
