package workload

import (
	"math/rand/v2"
)

// mutateConfigDump returns a copy of data with 1-5% of its bytes changed in
// a few clustered regions (resources that got a new version). Only digits,
// characters of hex strings (hashes) and of base64 strings (inline
// certificates) are replaced, by characters of the same class, so valid JSON
// stays valid and the length is preserved.
func mutateConfigDump(data []byte, r *rand.Rand) []byte {
	out := append([]byte(nil), data...)
	n := len(out)
	if n == 0 {
		return out
	}
	want := int(float64(n) * betweenF(r, 0.012, 0.048))
	regionLen := min(max(n/64, 1024), 16<<10)
	changed := 0
	for attempts := 0; changed < want && attempts < 4000; attempts++ {
		i := r.IntN(n)
		end := min(i+int(float64(regionLen)*betweenF(r, 0.5, 2)), n)
		for i > 0 && isTokenChar(out[i-1]) {
			i--
		}
		for i < end && changed < want {
			if !isTokenChar(out[i]) {
				i++
				continue
			}
			j := i
			for j < n && isTokenChar(out[j]) {
				j++
			}
			kind := classifyToken(out[i:j])
			for k := i; k < j && changed < want; k++ {
				c := out[k]
				if k > 0 && out[k-1] == '\\' {
					continue // part of an escape sequence such as \n
				}
				var nc byte
				switch {
				case kind == tokHex:
					nc = hexDigits[r.IntN(16)]
				case kind == tokBase64:
					nc = base64Chars[r.IntN(64)]
				case c >= '0' && c <= '9':
					if k > 0 && out[k-1] >= '0' && out[k-1] <= '9' {
						nc = byte('0' + r.IntN(10))
					} else {
						nc = byte('1' + r.IntN(9)) // never a leading zero
					}
				default:
					continue
				}
				if nc == c {
					continue
				}
				if c == data[k] {
					changed++
				} else if nc == data[k] {
					changed--
				}
				out[k] = nc
			}
			i = j
		}
	}
	return out
}

const base64Chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

const (
	tokOther = iota
	tokHex
	tokBase64
)

func isTokenChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '+' || c == '/'
}

// classifyToken tells hashes (>= 8 lower-case hex characters with a letter
// and a digit) and base64 data (>= 16 characters with upper, lower and
// digits) from other tokens. Both only occur inside JSON strings.
func classifyToken(t []byte) int {
	var digit, hexLetter, lower, upper, other bool
	for _, c := range t {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'a' && c <= 'f':
			hexLetter = true
		case c >= 'g' && c <= 'z':
			lower = true
		case c >= 'A' && c <= 'Z':
			upper = true
		default:
			other = true
		}
	}
	switch {
	case len(t) >= 8 && digit && hexLetter && !lower && !upper && !other:
		return tokHex
	case len(t) >= 16 && digit && upper && (lower || hexLetter):
		return tokBase64
	}
	return tokOther
}
