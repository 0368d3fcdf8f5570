// Package units formats quantities for people: byte counts in binary
// units, as the command line and the benchmark report print them. It
// imports nothing of the project and may be imported by any package.
package units

import "fmt"

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
