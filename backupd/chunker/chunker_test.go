package chunker

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

func randomData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func chunks(t testing.TB, tab *Table, data []byte) [][]byte {
	t.Helper()
	c := New(tab, bytes.NewReader(data), nil)
	var out [][]byte
	for {
		ch, err := c.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]byte(nil), ch...))
	}
}

func TestChunkSizesAndReassembly(t *testing.T) {
	tab := NewTable(42)
	for _, tc := range []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"tiny", 100},
		{"exactly min", MinSize},
		{"one over min", MinSize + 1},
		{"32MiB", 32 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := randomData(1, tc.size)
			cs := chunks(t, tab, data)
			if got := bytes.Join(cs, nil); !bytes.Equal(got, data) {
				t.Fatal("chunks do not reassemble to the input")
			}
			for i, c := range cs {
				if len(c) > MaxSize {
					t.Fatalf("chunk %d is %d bytes, over the max", i, len(c))
				}
				if i < len(cs)-1 && len(c) < MinSize {
					t.Fatalf("chunk %d is %d bytes, under the min", i, len(c))
				}
			}
			if tc.size == 32<<20 {
				avg := tc.size / len(cs)
				if avg < AvgSize/2 || avg > AvgSize*2 {
					t.Fatalf("average chunk %d bytes, want about %d", avg, AvgSize)
				}
			}
		})
	}
}

func TestBoundariesResynchronizeAfterInsert(t *testing.T) {
	tab := NewTable(7)
	data := randomData(2, 24<<20)
	edited := append(append(append([]byte(nil), data[:5<<20]...), []byte("inserted bytes")...), data[5<<20:]...)
	set := map[string]bool{}
	for _, c := range chunks(t, tab, data) {
		set[string(c)] = true
	}
	shared := 0
	cs := chunks(t, tab, edited)
	for _, c := range cs {
		if set[string(c)] {
			shared++
		}
	}
	if shared < len(cs)-3 {
		t.Fatalf("only %d of %d chunks shared after a small insert", shared, len(cs))
	}
}

func TestSeedChangesBoundaries(t *testing.T) {
	data := randomData(3, 16<<20)
	a, b := chunks(t, NewTable(1), data), chunks(t, NewTable(2), data)
	if len(a) == len(b) && len(a[0]) == len(b[0]) && len(a[1]) == len(b[1]) {
		t.Fatal("different gear seeds gave the same boundaries")
	}
}

func BenchmarkCut(b *testing.B) {
	tab := NewTable(1)
	data := randomData(4, 64<<20)
	b.SetBytes(int64(len(data)))
	buf := make([]byte, MaxSize+1<<20)
	for b.Loop() {
		c := New(tab, bytes.NewReader(data), buf)
		for {
			if _, err := c.Next(); err == io.EOF {
				break
			}
		}
	}
}
