//go:build !linux

package local

import (
	"io/fs"
	"time"
)

// changeTime falls back to the modification time where ctime is not read.
func changeTime(fi fs.FileInfo) time.Time { return fi.ModTime() }
