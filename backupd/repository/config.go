package repository

import (
	"encoding/json"
	"fmt"
)

// FormatVersion is the repository format this build reads and writes.
const FormatVersion = 2

// Config is the plaintext config object: it tells a reader the format
// before any key is opened.
type Config struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	Created string `json:"created"`
}

// DecodeConfig parses and validates the config object.
func DecodeConfig(b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("repository config: not valid JSON: %w", err)
	}
	if c.Version != FormatVersion {
		return c, fmt.Errorf("repository config: format version %d is not supported by this backupd (it reads version %d); use a backupd release that supports it", c.Version, FormatVersion)
	}
	if len(c.ID) != 64 {
		return c, fmt.Errorf("repository config: id %q: want 64 hex characters", c.ID)
	}
	if _, err := ParseID(c.ID); err != nil {
		return c, fmt.Errorf("repository config: %w", err)
	}
	return c, nil
}
