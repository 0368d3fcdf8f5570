package s3

// Placeholder methods until the implementation lands; this file is deleted
// by it.

import (
	"context"
	"errors"
	"io"

	"github.com/meshbackup/backupd/backupd/backend"
)

var errStub = errors.New("s3: not yet implemented")

func (b *Backend) Save(context.Context, backend.Handle, io.ReadSeeker) error { return errStub }
func (b *Backend) Load(context.Context, backend.Handle, int, int64, func(io.Reader) error) error {
	return errStub
}
func (b *Backend) Stat(context.Context, backend.Handle) (backend.FileInfo, error) {
	return backend.FileInfo{}, errStub
}
func (b *Backend) List(context.Context, backend.FileType, func(backend.FileInfo) error) error {
	return errStub
}
func (b *Backend) Remove(context.Context, backend.Handle) error { return errStub }
func (b *Backend) Location() string                             { return "s3://" }
