package mem_test

import (
	"testing"

	"github.com/meshbackup/backupd/backupd/backend"
	"github.com/meshbackup/backupd/backupd/backend/backendtest"
	"github.com/meshbackup/backupd/backupd/backend/mem"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return mem.New() })
}
