package storage

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/berth-dev/berth/snapshots"
)

// DiskUsage measures the tree at dir, dir included: the inodes, each hard
// link counted once, and the bytes they allocate. It gives up when ctx is
// done.
func DiskUsage(ctx context.Context, dir string) (snapshots.Usage, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]struct{}{}
	var size int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no inode information", path)
		}
		k := inode{uint64(st.Dev), uint64(st.Ino)}
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			size += int64(st.Blocks) * 512 // st_blocks counts 512-byte units
		}
		return nil
	})
	if err != nil {
		return snapshots.Usage{}, err
	}
	return snapshots.Usage{Inodes: int64(len(seen)), Size: size}, nil
}
