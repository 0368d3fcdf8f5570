package s3

import (
	"strings"

	"github.com/meshbackup/backupd/backupd/backend"
)

// join puts rel under the prefix.
func (b *Backend) join(rel string) string {
	if b.opt.Prefix == "" {
		return rel
	}
	return b.opt.Prefix + "/" + rel
}

// key returns the object key of a valid handle (see the package doc for
// the layout).
func (b *Backend) key(h backend.Handle) string {
	switch h.Type {
	case backend.ConfigFile:
		return b.join("config")
	case backend.PackFile:
		return b.join("data/" + h.Name[:2] + "/" + h.Name)
	}
	return b.join(string(h.Type) + "/" + h.Name)
}

// typePrefix is the key prefix under which the objects of t are listed.
func (b *Backend) typePrefix(t backend.FileType) string {
	return b.join(string(t) + "/")
}

// nameOf returns the object name of key listed under typePrefix(t), or
// false for a key that is not an object of the layout (a foreign file, a
// directory marker).
func (b *Backend) nameOf(t backend.FileType, key string) (string, bool) {
	rel, ok := strings.CutPrefix(key, b.typePrefix(t))
	if !ok {
		return "", false
	}
	name := rel
	if t == backend.PackFile {
		dir, n, ok := strings.Cut(rel, "/")
		if !ok || len(n) < 2 || dir != n[:2] {
			return "", false
		}
		name = n
	}
	if (backend.Handle{Type: t, Name: name}).Valid() != nil {
		return "", false
	}
	return name, true
}
