package mount

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// pageSize bounds the data of one mount(2) call: the kernel copies at most
// one page of it.
var pageSize = os.Getpagesize()

// flagWord is a mount(8) option that sets or clears a mount flag.
type flagWord struct {
	clear bool
	flag  uintptr
}

var flagWords = map[string]flagWord{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

// propagationWords change a mount's propagation type, which takes a call of
// its own after the mount.
var propagationWords = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// options are a Mount's options sorted for mount(2).
type options struct {
	flags       uintptr
	propagation uintptr
	data        []string
}

func parseOptions(opts []string) (options, error) {
	var o options
	for _, opt := range opts {
		if w, ok := flagWords[opt]; ok {
			if w.clear {
				o.flags &^= w.flag
			} else {
				o.flags |= w.flag
			}
			continue
		}
		if p, ok := propagationWords[opt]; ok {
			o.propagation = p
			continue
		}
		if opt == "loop" {
			return o, fmt.Errorf("option %q: loop devices are not supported: %w", opt, errdefs.ErrNotImplemented)
		}
		o.data = append(o.data, opt)
	}
	return o, nil
}

// Mount mounts m on target, or on m.Target below target.
func (m *Mount) Mount(target string) error {
	path, err := mountPoint(target, m.Target)
	if err != nil {
		return err
	}
	o, err := parseOptions(m.Options)
	if err != nil {
		return fmt.Errorf("mount %s %q on %q: %w", m.Type, m.Source, path, err)
	}
	var chdir string
	// 512 bytes of slack, as the kernel may append its own options.
	if m.Type == "overlay" && len(strings.Join(o.data, ",")) > pageSize-512 {
		chdir, o.data = compactLowerdirs(o.data)
	}
	data := strings.Join(o.data, ",")
	if len(data) >= pageSize {
		return fmt.Errorf("mount %s %q on %q: options are %d bytes, over the kernel's limit of %d (one page): %w",
			m.Type, m.Source, path, len(data), pageSize-1, errdefs.ErrInvalidArgument)
	}
	if err := m.mount(path, o, chdir, data); err != nil {
		return fmt.Errorf("mount %s %q on %q: %w", m.Type, m.Source, path, err)
	}
	return nil
}

// mount makes the mount(2) calls for one Mount: the mount itself, then a
// propagation change, then the remount that makes a bind read-only.
func (m *Mount) mount(path string, o options, chdir, data string) error {
	if o.flags&unix.MS_REMOUNT == 0 || data != "" {
		if err := mountAt(chdir, m.Source, path, m.Type, o.flags, data); err != nil {
			return err
		}
	}
	if o.propagation != 0 {
		if err := unix.Mount("", path, "", o.propagation, ""); err != nil {
			return fmt.Errorf("set propagation: %w", err)
		}
	}
	const roBind = unix.MS_BIND | unix.MS_RDONLY
	if o.flags&roBind == roBind && o.flags&unix.MS_REMOUNT == 0 {
		flags := (o.flags &^ unix.MS_REC) | unix.MS_REMOUNT
		if err := unix.Mount("", path, "", flags, ""); err != nil {
			// Never leave a writable bind where a read-only one was asked for.
			_ = unix.Unmount(path, unix.MNT_DETACH)
			return fmt.Errorf("remount read-only: %w", err)
		}
	}
	return nil
}

// mountAt calls mount(2) with chdir, if set, as the working directory, so
// that relative paths in data are resolved from there.
func mountAt(chdir, source, target, fstype string, flags uintptr, data string) error {
	if chdir == "" {
		return unix.Mount(source, target, fstype, flags, data)
	}
	errc := make(chan error, 1)
	go func() {
		// The working directory is per process, unless this thread stops
		// sharing it (CLONE_FS). The thread is never unlocked: Go then ends
		// it with the goroutine rather than reuse a thread that differs.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare filesystem attributes: %w", err)
			return
		}
		if err := unix.Chdir(chdir); err != nil {
			errc <- fmt.Errorf("chdir %q: %w", chdir, err)
			return
		}
		errc <- unix.Mount(source, target, fstype, flags, data)
	}()
	return <-errc
}

// compactLowerdirs rewrites an overlay's lowerdir option relative to the
// lowerdirs' longest common parent, which it returns. Snapshotters keep
// layers side by side (root/snapshots/<id>/fs), so the common parent takes
// most of each path. data is returned unchanged when nothing can be gained.
func compactLowerdirs(data []string) (string, []string) {
	i := slices.IndexFunc(data, func(o string) bool { return strings.HasPrefix(o, "lowerdir=") })
	if i < 0 {
		return "", data
	}
	dirs := strings.Split(strings.TrimPrefix(data[i], "lowerdir="), ":")
	common := commonParent(dirs)
	if common == "" || common == "/" {
		return "", data
	}
	rel := make([]string, len(dirs))
	for j, dir := range dirs {
		r, err := filepath.Rel(common, dir)
		if err != nil {
			return "", data
		}
		rel[j] = r
	}
	out := slices.Clone(data)
	out[i] = "lowerdir=" + strings.Join(rel, ":")
	return common, out
}

// commonParent returns the deepest directory holding every one of the
// absolute paths dirs, or "" when one of them is relative.
func commonParent(dirs []string) string {
	var common []string
	for i, dir := range dirs {
		if !filepath.IsAbs(dir) {
			return ""
		}
		parts := strings.Split(filepath.Dir(filepath.Clean(dir)), "/")
		if i == 0 {
			common = parts
			continue
		}
		n := 0
		for n < len(common) && n < len(parts) && common[n] == parts[n] {
			n++
		}
		common = common[:n]
	}
	if len(common) == 0 {
		return ""
	}
	return "/" + filepath.Join(common...)
}
