package backend_test

import (
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
)

// store is a backend with no optional feature; its Backend methods are
// never called here.
type store struct{ backend.Backend }

// scratchStore offers a scratch directory.
type scratchStore struct {
	store
	dir string
}

func (s *scratchStore) TempDir() string { return s.dir }

// wrapper stands for a metering or retrying layer: it forwards no optional
// method, only Unwrap.
type wrapper struct{ backend.Backend }

func (w *wrapper) Unwrap() backend.Backend { return w.Backend }

// cleaningWrapper implements a feature itself.
type cleaningWrapper struct{ wrapper }

func (*cleaningWrapper) CleanTemp() error { return nil }

func TestAsFindsFeaturesThroughWrappers(t *testing.T) {
	base := &scratchStore{dir: "/repo/tmp"}
	be := &wrapper{&wrapper{base}}
	td, ok := backend.As[backend.TempDirer](be)
	if !ok || td.TempDir() != "/repo/tmp" {
		t.Fatalf("TempDirer through two wrappers: got %v, %v", td, ok)
	}
	if _, ok := backend.As[backend.TempCleaner](be); ok {
		t.Fatal("TempCleaner found though no layer implements it")
	}
	if _, ok := backend.As[backend.TempDirer](&wrapper{&wrapper{&store{}}}); ok {
		t.Fatal("TempDirer found though the wrapped backend has none")
	}
	if _, ok := backend.As[backend.TempDirer](base); !ok {
		t.Fatal("TempDirer of an unwrapped backend not found")
	}
	// A layer's own implementation is found, and the walk goes past it for
	// other features.
	outer := &wrapper{&cleaningWrapper{wrapper{base}}}
	if _, ok := backend.As[backend.TempCleaner](outer); !ok {
		t.Fatal("TempCleaner of a middle layer not found")
	}
	if td, ok := backend.As[backend.TempDirer](outer); !ok || td.TempDir() != "/repo/tmp" {
		t.Fatal("TempDirer below a layer with another feature not found")
	}
	if _, ok := backend.As[backend.TempDirer](nil); ok {
		t.Fatal("TempDirer found on a nil backend")
	}
}

// A wrapper that unwraps to nil ends the walk.
func TestAsStopsAtNilUnwrap(t *testing.T) {
	if _, ok := backend.As[backend.TempDirer](&wrapper{}); ok {
		t.Fatal("TempDirer found below a wrapper of nothing")
	}
}
