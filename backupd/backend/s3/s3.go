// Package s3 stores a repository in an S3-compatible bucket.
package s3

import (
	"context"
	"errors"
)

// Backend is a repository in a bucket.
type Backend struct{}

// ParseURL splits s3://BUCKET[/PREFIX].
func ParseURL(s string) (bucket, prefix string, err error) {
	return "", "", errors.New("s3: not yet implemented")
}

// Create checks that the bucket can hold a new repository (reachable, no
// repository under the prefix, conditional writes honoured) and returns
// the backend.
func Create(ctx context.Context, opt Options) (*Backend, error) {
	return nil, errors.New("s3: not yet implemented")
}

// Open returns the backend of an existing repository.
func Open(ctx context.Context, opt Options) (*Backend, error) {
	return nil, errors.New("s3: not yet implemented")
}
