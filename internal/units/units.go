// Package units formats quantities for people: byte counts in binary
// units, as the command line and the benchmark report print them, and
// parses them back from config files and flags (ParseBytes, ParseRate). It
// imports nothing of the project and may be imported by any package.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Bytes formats n bytes with a binary unit: "512 B", "1.5 KiB", "3.2 MiB",
// "1.06 GiB". A negative count is printed as bytes.
func Bytes[T ~int64 | ~uint64 | ~int](n T) string {
	f := float64(n)
	switch {
	case f >= 1<<30:
		return fmt.Sprintf("%.2f GiB", f/(1<<30))
	case f >= 1<<20:
		return fmt.Sprintf("%.1f MiB", f/(1<<20))
	case f >= 1<<10:
		return fmt.Sprintf("%.1f KiB", f/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// byteUnits are the unit suffixes ParseBytes takes, binary (KiB) and
// decimal (kB), with their factors; matched without regard to case.
var byteUnits = []struct {
	suffix string
	factor float64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
	{"b", 1},
}

// ParseBytes reads a byte count for people: a number, optionally with a
// fraction, and a unit: B, KiB, MiB, GiB, TiB (binary) or kB, MB, GB, TB
// (decimal), in any case, with or without a space; a bare number is bytes.
// The count must not be negative; fractions of a byte are dropped.
func ParseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	factor := 1.0
	for _, u := range byteUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, factor = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.factor
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || t == "" || strings.ContainsAny(t, "einpx_+-") || f < 0 {
		return 0, fmt.Errorf("%q is not a byte count such as 512KiB, 50MiB or 1.5GB", s)
	}
	n := f * factor
	if n >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n), nil
}

// ParseRate reads a rate of bytes per second for people: a byte count as
// ParseBytes takes it followed by "/s" ("50MiB/s", "1.5 GB/s"). It must be
// positive.
func ParseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if !strings.HasSuffix(t, "/s") {
		return 0, fmt.Errorf("%q is not a rate such as 50MiB/s (bytes per second, ending in /s)", s)
	}
	n, err := ParseBytes(strings.TrimSuffix(t, "/s"))
	if err != nil {
		return 0, fmt.Errorf("%q is not a rate such as 50MiB/s: %w", s, err)
	}
	if n <= 0 {
		return 0, fmt.Errorf("%q: a rate must be positive", s)
	}
	return n, nil
}
