package workload

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
)

// Domain tags keep the random streams of different generators independent.
const (
	tagLayout uint64 = iota + 1
	tagProxy
	tagLog
	tagLogHist
	tagConfig
	tagConfigMut
	tagStats
	tagStatsStep
	tagBoot
	tagCert
	tagRoot
	tagToken
	tagEDS
	tagEDSMut
	tagTap
	tagMisc
	tagAppender
	tagServer
	tagRaftPage
	tagRaftStep
	tagSnap
	tagStep
	tagCrash
)

// mix is the splitmix64 finalizer.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func seedOf(parts ...uint64) uint64 {
	h := uint64(0x6a09e667f3bcc908)
	for _, p := range parts {
		h = mix(h ^ p)
	}
	return h
}

// newRand returns a PCG-backed generator whose stream is a pure function of parts.
func newRand(parts ...uint64) *rand.Rand {
	s := seedOf(parts...)
	return rand.New(rand.NewPCG(s, mix(s^0x5851f42d4c957f2d)))
}

func pick(r *rand.Rand, v []string) string { return v[r.IntN(len(v))] }

// between returns a uniform integer in [lo, hi].
func between(r *rand.Rand, lo, hi int) int {
	if hi <= lo {
		return lo
	}
	return lo + r.IntN(hi-lo+1)
}

func betweenF(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

const hexDigits = "0123456789abcdef"

func appendHex(b []byte, r *rand.Rand, n int) []byte {
	for n > 0 {
		x := r.Uint64()
		for k := 0; k < 16 && n > 0; k++ {
			b = append(b, hexDigits[x&15])
			x >>= 4
			n--
		}
	}
	return b
}

func appendUUID(b []byte, r *rand.Rand) []byte {
	b = appendHex(b, r, 8)
	b = append(b, '-')
	b = appendHex(b, r, 4)
	b = append(b, '-', '4')
	b = appendHex(b, r, 3)
	b = append(b, '-', "89ab"[r.IntN(4)])
	b = appendHex(b, r, 3)
	b = append(b, '-')
	return appendHex(b, r, 12)
}

func appendIP(b []byte, r *rand.Rand, first int) []byte {
	b = strconv.AppendInt(b, int64(first), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(r.IntN(64)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(r.IntN(256)), 10)
	b = append(b, '.')
	return strconv.AppendInt(b, int64(1+r.IntN(254)), 10)
}

// appendPoolIP appends the 10.x.y.z address selected by hash h.
func appendPoolIP(b []byte, h uint64) []byte {
	b = append(b, "10."...)
	b = strconv.AppendUint(b, h&63, 10)
	b = append(b, '.')
	b = strconv.AppendUint(b, (h>>8)&255, 10)
	b = append(b, '.')
	return strconv.AppendUint(b, 1+(h>>16)%254, 10)
}

// fillRandom fills p with pseudo-random bytes from r.
func fillRandom(p []byte, r *rand.Rand) {
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.Uint64())
	}
	if i < len(p) {
		var t [8]byte
		binary.LittleEndian.PutUint64(t[:], r.Uint64())
		copy(p[i:], t[:])
	}
}

func uuidString(r *rand.Rand) string { return string(appendUUID(nil, r)) }
