package local

import (
	"io/fs"
	"syscall"
	"time"
)

// changeTime returns the inode change time of fi: for a blob, the time of
// its commit (the rename and chmod), at the latest.
func changeTime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fi.ModTime()
}
