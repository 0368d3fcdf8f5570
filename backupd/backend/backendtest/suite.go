// Package backendtest is the conformance suite every backend passes.
//
// Imports: backend and testing only; only backend tests import it. Like all
// of the engine it never imports Prometheus, collectors/ or exporter/
// (docs/DESIGN.md §2.3).
package backendtest

import (
	"bytes"
	"errors"
	"io"
	"sort"
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
)

// Run runs the suite against backends made by newBackend, one per subtest.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	t.Run("SaveLoadRange", func(t *testing.T) {
		be := newBackend(t)
		ctx := t.Context()
		data := bytes.Repeat([]byte("0123456789"), 1000)
		h := backend.Handle{Type: backend.PackFile, Name: "ab01"}
		if err := be.Save(ctx, h, bytes.NewReader(data)); err != nil {
			t.Fatalf("save: %v", err)
		}
		got, err := backend.LoadAll(ctx, be, h)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("load all: err %v, equal %v", err, bytes.Equal(got, data))
		}
		p := make([]byte, 10)
		if err := backend.ReadAt(ctx, be, h, p, 995); err != nil || string(p) != "5678901234" {
			t.Fatalf("range read: %q %v", p, err)
		}
		if err := backend.ReadAt(ctx, be, h, make([]byte, 10), int64(len(data)-5)); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("read past end: want ErrUnexpectedEOF, got %v", err)
		}
		fi, err := be.Stat(ctx, h)
		if err != nil || fi.Size != int64(len(data)) {
			t.Fatalf("stat: %+v %v", fi, err)
		}
	})
	t.Run("Immutable", func(t *testing.T) {
		be := newBackend(t)
		ctx := t.Context()
		h := backend.Handle{Type: backend.SnapshotFile, Name: "s1"}
		if err := be.Save(ctx, h, bytes.NewReader([]byte("first"))); err != nil {
			t.Fatal(err)
		}
		if err := be.Save(ctx, h, bytes.NewReader([]byte("second"))); !errors.Is(err, backend.ErrExists) {
			t.Fatalf("overwrite: want ErrExists, got %v", err)
		}
		got, _ := backend.LoadAll(ctx, be, h)
		if string(got) != "first" {
			t.Fatalf("object changed by a refused save: %q", got)
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		be := newBackend(t)
		ctx := t.Context()
		h := backend.Handle{Type: backend.IndexFile, Name: "missing"}
		if _, err := backend.LoadAll(ctx, be, h); !errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("load: want ErrNotFound, got %v", err)
		}
		if _, err := be.Stat(ctx, h); !errors.Is(err, backend.ErrNotFound) {
			t.Fatalf("stat: want ErrNotFound, got %v", err)
		}
		if err := be.Remove(ctx, h); err != nil {
			t.Fatalf("remove missing: %v", err)
		}
	})
	t.Run("ListRemove", func(t *testing.T) {
		be := newBackend(t)
		ctx := t.Context()
		names := []string{"aa11", "ab22", "ff33"}
		for _, n := range names {
			if err := be.Save(ctx, backend.Handle{Type: backend.PackFile, Name: n}, bytes.NewReader([]byte(n))); err != nil {
				t.Fatal(err)
			}
		}
		if err := be.Save(ctx, backend.Handle{Type: backend.IndexFile, Name: "i1"}, bytes.NewReader(nil)); err != nil {
			t.Fatal(err)
		}
		list := func() []string {
			var got []string
			if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
				got = append(got, fi.Name)
				if fi.Size != 4 {
					t.Errorf("size of %s: %d", fi.Name, fi.Size)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			sort.Strings(got)
			return got
		}
		if got := list(); len(got) != 3 || got[0] != "aa11" || got[2] != "ff33" {
			t.Fatalf("list: %v", got)
		}
		if err := be.Remove(ctx, backend.Handle{Type: backend.PackFile, Name: "ab22"}); err != nil {
			t.Fatal(err)
		}
		if got := list(); len(got) != 2 {
			t.Fatalf("after remove: %v", got)
		}
		stop := errors.New("stop")
		if err := be.List(ctx, backend.PackFile, func(backend.FileInfo) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("list callback error not returned: %v", err)
		}
	})
	t.Run("Edges", func(t *testing.T) {
		be := newBackend(t)
		ctx := t.Context()
		// An empty object is an object.
		empty := backend.Handle{Type: backend.MarkerFile, Name: "empty"}
		if err := be.Save(ctx, empty, bytes.NewReader(nil)); err != nil {
			t.Fatalf("save empty: %v", err)
		}
		if got, err := backend.LoadAll(ctx, be, empty); err != nil || len(got) != 0 {
			t.Fatalf("load empty: %q %v", got, err)
		}
		if fi, err := be.Stat(ctx, empty); err != nil || fi.Size != 0 {
			t.Fatalf("stat empty: %+v %v", fi, err)
		}
		// Save reads from the start, whatever the reader's position, and
		// from a reader that is not an io.ReaderAt.
		h := backend.Handle{Type: backend.MarkerFile, Name: "m1"}
		rd := bytes.NewReader([]byte("0123456789"))
		if _, err := rd.Seek(4, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		if err := be.Save(ctx, h, struct{ io.ReadSeeker }{rd}); err != nil {
			t.Fatalf("save: %v", err)
		}
		if got, err := backend.LoadAll(ctx, be, h); err != nil || string(got) != "0123456789" {
			t.Fatalf("saved from the reader's position, not its start: %q %v", got, err)
		}
		// Reading from the end to the end is empty; so is the last byte
		// to the end one byte.
		for _, c := range []struct {
			offset int64
			want   string
		}{{10, ""}, {9, "9"}} {
			var got []byte
			err := be.Load(ctx, h, 0, c.offset, func(rd io.Reader) error {
				var err error
				got, err = io.ReadAll(rd)
				return err
			})
			if err != nil || string(got) != c.want {
				t.Fatalf("load from %d to the end: %q %v, want %q", c.offset, got, err, c.want)
			}
		}
		p := make([]byte, 3)
		if err := backend.ReadAt(ctx, be, h, p, 7); err != nil || string(p) != "789" {
			t.Fatalf("read the last bytes: %q %v", p, err)
		}
	})
	t.Run("InvalidNames", func(t *testing.T) {
		be := newBackend(t)
		for _, n := range []string{"", "../x", "a/b", ".hidden", "x\x00"} {
			if err := be.Save(t.Context(), backend.Handle{Type: backend.IndexFile, Name: n}, bytes.NewReader(nil)); err == nil {
				t.Errorf("name %q accepted", n)
			}
		}
	})
}
