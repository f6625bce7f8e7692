package archive

import (
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A resolver opens directories below a root as if the root were "/": a
// symlink, absolute or relative, is followed inside the root and ".." stops
// at it, the way a container sees its rootfs and the way containerd resolves
// layer paths. In strict mode a symlink or ".." that would leave the root is
// an error (errEscape) instead. Either way no lookup ever leaves the root.
type resolver struct {
	rootFD   int
	rootPath string // the root as /proc names it, to name opened directories
	strict   bool
	openat2  bool // the kernel has openat2 and nothing (seccomp) forbids it
}

// maxSymlinks bounds symlink expansions in one lookup, as Linux does.
const maxSymlinks = 40

func newResolver(root string, strict, walkOnly bool) (*resolver, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open root", Path: root, Err: err}
	}
	r := &resolver{rootFD: fd, strict: strict}
	r.rootPath, _ = fdPath(fd)
	r.openat2 = !walkOnly && probeOpenat2(fd)
	return r, nil
}

func (r *resolver) close() { unix.Close(r.rootFD) }

func fdPath(fd int) (string, error) {
	return os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
}

func probeOpenat2(dirfd int) bool {
	fd, err := unix.Openat2(dirfd, ".", &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT,
	})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

// openDir opens the directory name (clean, relative, not the root) and
// returns its descriptor and canonical name below the root. With create,
// missing directories on the way are made with mode 0755, as containerd
// does for parents a layer does not list.
func (r *resolver) openDir(name string, create bool) (int, string, error) {
	if r.openat2 {
		fd, err := r.openat2Dir(name)
		if err == nil {
			return fd, r.canonical(fd, name), nil
		}
		if !create || !errors.Is(err, unix.ENOENT) {
			return -1, "", err
		}
		// Rare: let the walk create what is missing, following any
		// dangling symlink to the directory it names, inside the root.
	}
	return r.walk(name, create)
}

func (r *resolver) openat2Dir(name string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	if r.strict {
		how.Resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS
	}
	for {
		fd, err := unix.Openat2(r.rootFD, name, &how)
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			continue // a concurrent rename; the kernel asks to retry
		case err == unix.EXDEV && r.strict:
			return -1, errEscape
		}
		return fd, err
	}
}

// canonical names fd below the root, falling back to the lexical name when
// /proc is unavailable. Only bookkeeping uses it, never a lookup.
func (r *resolver) canonical(fd int, name string) string {
	p, err := fdPath(fd)
	if err != nil || r.rootPath == "" {
		return name
	}
	if p == r.rootPath {
		return "" // a symlink that leads back to the root
	}
	prefix := strings.TrimSuffix(r.rootPath, "/") + "/"
	if rel, ok := strings.CutPrefix(p, prefix); ok {
		return rel
	}
	return name
}

// walker is one component-by-component lookup: a stack of open directories
// from the root down, so ".." pops instead of looking anything up.
type walker struct {
	r     *resolver
	fds   []int
	names []string
}

func (r *resolver) walk(name string, create bool) (int, string, error) {
	w := &walker{r: r, fds: []int{r.rootFD}}
	defer w.release()
	comps := strings.Split(name, "/")
	for links := 0; len(comps) > 0; {
		c := comps[0]
		comps = comps[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			if err := w.up(); err != nil {
				return -1, "", err
			}
			continue
		}
		target, err := w.step(c, create)
		if err != nil {
			return -1, "", err
		}
		if target == "" {
			continue
		}
		if links++; links > maxSymlinks {
			return -1, "", unix.ELOOP
		}
		if path.IsAbs(target) {
			if r.strict {
				return -1, "", errEscape
			}
			w.toRoot()
		}
		comps = append(strings.Split(target, "/"), comps...)
	}
	return w.result()
}

func (w *walker) top() int { return w.fds[len(w.fds)-1] }

func (w *walker) up() error {
	if len(w.fds) == 1 {
		if w.r.strict {
			return errEscape
		}
		return nil // ".." of "/" is "/"
	}
	unix.Close(w.top())
	w.fds = w.fds[:len(w.fds)-1]
	w.names = w.names[:len(w.names)-1]
	return nil
}

func (w *walker) toRoot() {
	for len(w.fds) > 1 {
		_ = w.up()
	}
}

// step descends into c, or returns c's target when c is a symlink.
func (w *walker) step(c string, create bool) (string, error) {
	var st unix.Stat_t
	err := unix.Fstatat(w.top(), c, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT && create {
		if err = w.mkdir(c); err == nil {
			err = unix.Fstatat(w.top(), c, &st, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	if err != nil {
		return "", err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fd, err := unix.Openat(w.top(), c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", err
		}
		w.fds = append(w.fds, fd)
		w.names = append(w.names, c)
		return "", nil
	case unix.S_IFLNK:
		target, err := readlinkat(w.top(), c)
		if err == nil && target == "" {
			err = unix.ENOENT
		}
		return target, err
	}
	return "", unix.ENOTDIR
}

// mkdir makes an implied parent directory with mode 0755 whatever the umask.
func (w *walker) mkdir(c string) error {
	err := unix.Mkdirat(w.top(), c, 0o755)
	if err == unix.EEXIST {
		return nil
	}
	if err != nil {
		return err
	}
	return chmodAt(w.top(), c, 0o755)
}

func (w *walker) result() (int, string, error) {
	top := w.top()
	if len(w.fds) == 1 {
		fd, err := unix.Dup(top)
		if err != nil {
			return -1, "", err
		}
		unix.CloseOnExec(fd)
		return fd, "", nil
	}
	w.fds = w.fds[:len(w.fds)-1] // the caller owns top now
	return top, strings.Join(w.names, "/"), nil
}

func (w *walker) release() {
	for _, fd := range w.fds[1:] {
		unix.Close(fd)
	}
	w.fds = w.fds[:1]
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// dirHandle is an open directory below the root and its canonical name
// there ("" for the root itself).
type dirHandle struct {
	fd    int
	canon string
}

func (h *dirHandle) join(name string) string {
	if h.canon == "" {
		return name
	}
	return h.canon + "/" + name
}

// dirCache keeps recently used directories open by their name in the layer,
// so that the common run of entries in one directory costs one lookup.
// A cached handle stays right until something is removed (a directory or
// symlink on the way may be gone or replaced), so removals flush the cache,
// keeping only the handles the caller holds.
type dirCache struct {
	res  *resolver
	root *dirHandle
	m    map[string]*dirHandle
}

const dirCacheMax = 256

func newDirCache(res *resolver) *dirCache {
	return &dirCache{res: res, root: &dirHandle{fd: res.rootFD}, m: map[string]*dirHandle{}}
}

// get returns the directory name ("" for the root). The handle is valid
// until the next trim, or flush that does not keep it.
func (c *dirCache) get(name string, create bool) (*dirHandle, error) {
	if name == "" {
		return c.root, nil
	}
	if h, ok := c.m[name]; ok {
		return h, nil
	}
	fd, canon, err := c.res.openDir(name, create)
	if err != nil {
		return nil, err
	}
	h := &dirHandle{fd: fd, canon: canon}
	c.m[name] = h
	return h, nil
}

// put caches a directory the caller just made and opened.
func (c *dirCache) put(name string, h *dirHandle) {
	if old, ok := c.m[name]; ok {
		unix.Close(old.fd)
	}
	c.m[name] = h
}

// trim bounds the open descriptors; call it only between entries.
func (c *dirCache) trim() {
	if len(c.m) > dirCacheMax {
		c.flush()
	}
}

func (c *dirCache) flush(keep ...*dirHandle) {
	for name, h := range c.m {
		if !slices.Contains(keep, h) {
			unix.Close(h.fd)
			delete(c.m, name)
		}
	}
}

func (c *dirCache) close() {
	c.flush()
	c.res.close()
}

// removeAllAt removes name from dirfd and, if it is a directory, everything
// below it. It never follows a symlink; a missing name is not an error.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	names, err := listDir(fd)
	for _, n := range names {
		if err == nil {
			err = removeAllAt(fd, n)
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return err
	}
	return nil
}

// listDir returns the names in the directory fd, through a descriptor of its
// own so that fd's offset is untouched.
func listDir(fd int) ([]string, error) {
	nfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(nfd), ".")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	return names, nil
}
