package cri

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// usageMaxAge is how long a measured usage answers ImageFsInfo: the
// kubelet asks every ten seconds or so, every crictl image command asks
// once to probe the API version, and a walk of a large snapshotter costs
// far more than a slightly old figure. Pulls and removals of images make
// the next call measure again.
const usageMaxAge = 5 * time.Second

// dirUsage measures what a directory tree takes on disk: allocated bytes
// and inodes, each hard-linked inode counted once.
type dirUsage struct {
	dir string

	mu   sync.Mutex
	last usage
}

type usage struct {
	at            time.Time
	bytes, inodes uint64
}

func newDirUsage(dir string) *dirUsage { return &dirUsage{dir: dir} }

// get returns the usage measured within usageMaxAge, measuring it now if
// there is none; concurrent callers share one walk.
func (u *dirUsage) get() (usage, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if time.Since(u.last.at) < usageMaxAge {
		return u.last, nil
	}
	m, err := measure(u.dir)
	if err != nil {
		return usage{}, err
	}
	u.last = m
	return m, nil
}

// invalidate makes the next get measure.
func (u *dirUsage) invalidate() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.last = usage{}
}

// inode identifies a file across hard links.
type inode struct{ dev, ino uint64 }

// measure walks dir. Files that vanish during the walk (a container
// exiting, a snapshot removed) are skipped.
func measure(dir string) (usage, error) {
	if dir == "" {
		return usage{}, fmt.Errorf("image filesystem: the snapshotter has no directory: %w", errdefs.ErrFailedPrecondition)
	}
	m := usage{at: time.Now()}
	seen := map[inode]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path != dir && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		// Only files with several links can be met twice.
		if !d.IsDir() && st.Nlink > 1 {
			key := inode{dev: uint64(st.Dev), ino: st.Ino}
			if seen[key] {
				return nil
			}
			seen[key] = true
		}
		m.bytes += uint64(st.Blocks) * 512
		m.inodes++
		return nil
	})
	if err != nil {
		return usage{}, fmt.Errorf("image filesystem %s: %w", dir, err)
	}
	return m, nil
}
