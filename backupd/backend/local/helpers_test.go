package local_test

import (
	"bytes"
	"io"
)

func nilReader() io.ReadSeeker { return bytes.NewReader([]byte("{}")) }
