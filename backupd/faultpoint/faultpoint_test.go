package faultpoint

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		wantErr bool
		after   int
	}{
		{"", false, 0},
		{"after-pack-put", false, 1},
		{"after-index-write:3", false, 3},
		{"after-pack-put:0", true, 0},
		{"after-pack-put:x", true, 0},
		{"nowhere", true, 0},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := Parse(tc.spec)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v", err)
			}
			if s != nil && s.after != tc.after {
				t.Fatalf("after %d, want %d", s.after, tc.after)
			}
		})
	}
}

func TestHitFiresOnceAtTheNthHit(t *testing.T) {
	fired := 0
	s := NewFunc(AfterChunk, 3, func() { fired++ })
	for range 5 {
		s.Hit(AfterChunk)
		s.Hit(AfterPackPut)
	}
	if fired != 1 {
		t.Fatalf("fired %d times", fired)
	}
	var none *Set
	none.Hit(AfterChunk) // a nil set is a no-op
}

func TestHookSeesEveryHit(t *testing.T) {
	var seen []int
	s := NewHook(AfterChunk, func(n int) { seen = append(seen, n) })
	for range 3 {
		s.Hit(AfterChunk)
		s.Hit(AfterPackPut)
	}
	if len(seen) != 3 || seen[0] != 1 || seen[2] != 3 {
		t.Fatalf("hook saw hits %v, want [1 2 3]", seen)
	}
}
