package oci

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	passwdFile = "/etc/passwd"
	groupFile  = "/etc/group"
)

// ResolveUser resolves a docker-style user, "", "name", "uid",
// "name:group", "uid:gid" or "uid:groupname", against the /etc/passwd and
// /etc/group of the image unpacked at rootfs, a directory on the host.
// Both files are read with their symbolic links resolved inside rootfs.
//
// The caller passes the -u flag, or else the image config's User: "" is
// root, 0:0. A user name must be in /etc/passwd; a uid need not be, and
// then has gid 0, so numeric ids work in an image without the files. The
// user's primary gid comes from its passwd entry unless a group is given.
//
// The supplementary groups (AdditionalGids) are, as docker and containerd
// give them, the primary gid first, then the groups of /etc/group that
// list the user's name, those only when no group is given: "user:group"
// runs with that one group alone. The primary gid is listed because a
// process that can change its gid (CAP_SETGID is a default capability)
// would otherwise shed it, and with it any access a file's group bits
// deny that group (CVE-2023-25173).
//
// Unknown names are NotFound errors naming the user or group and the file
// (or saying the image has no such file); a malformed user string is
// InvalidArgument.
func ResolveUser(rootfs, user string) (specs.User, error) {
	userArg, groupArg, explicitGroup := strings.Cut(user, ":")
	if explicitGroup && groupArg == "" {
		return specs.User{}, fmt.Errorf("user %q: empty group after ':': %w", user, errdefs.ErrInvalidArgument)
	}
	db := &accounts{rootfs: rootfs}
	entry, uid, err := db.user(userArg)
	if err != nil {
		return specs.User{}, fmt.Errorf("user %q: %w", user, err)
	}
	out := specs.User{UID: uid}
	if entry != nil {
		out.GID = entry.gid
	}
	var member []uint32
	switch {
	case explicitGroup:
		out.GID, err = db.group(groupArg)
	case entry != nil:
		member, err = db.memberOf(entry.name)
	}
	if err != nil {
		return specs.User{}, fmt.Errorf("user %q: %w", user, err)
	}
	out.AdditionalGids = []uint32{out.GID}
	for _, g := range member {
		if !slices.Contains(out.AdditionalGids, g) {
			out.AdditionalGids = append(out.AdditionalGids, g)
		}
	}
	return out, nil
}

type passwdEntry struct {
	name     string
	uid, gid uint32
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// accounts reads an image's passwd and group files on first use. A
// missing file reads as empty, with missing set, so that numeric ids
// still resolve.
type accounts struct {
	rootfs string

	passwd        []passwdEntry
	passwdMissing bool
	passwdRead    bool

	groups        []groupEntry
	groupsMissing bool
	groupsRead    bool
}

// readAccountFile reads file of the image; a file the image lacks is nil
// data and missing.
func (db *accounts) readAccountFile(file string) (data []byte, missing bool, err error) {
	data, err = readImageFile(db.rootfs, file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s of rootfs %q: %w", file, db.rootfs, err)
	}
	return data, false, nil
}

func (db *accounts) loadPasswd() error {
	if db.passwdRead {
		return nil
	}
	data, missing, err := db.readAccountFile(passwdFile)
	if err != nil {
		return err
	}
	db.passwd, db.passwdMissing, db.passwdRead = parsePasswd(data), missing, true
	return nil
}

func (db *accounts) loadGroups() error {
	if db.groupsRead {
		return nil
	}
	data, missing, err := db.readAccountFile(groupFile)
	if err != nil {
		return err
	}
	db.groups, db.groupsMissing, db.groupsRead = parseGroup(data), missing, true
	return nil
}

// user resolves the user part: its passwd entry (nil for a uid the image
// does not list) and its uid. "" is root.
func (db *accounts) user(arg string) (*passwdEntry, uint32, error) {
	if err := db.loadPasswd(); err != nil {
		return nil, 0, err
	}
	if arg == "" || isNumeric(arg) {
		uid, err := parseID(arg, "uid")
		if err != nil {
			return nil, 0, err
		}
		i := slices.IndexFunc(db.passwd, func(e passwdEntry) bool { return e.uid == uid })
		if i < 0 {
			return nil, uid, nil
		}
		return &db.passwd[i], uid, nil
	}
	i := slices.IndexFunc(db.passwd, func(e passwdEntry) bool { return e.name == arg })
	if i < 0 {
		return nil, 0, db.notFound(passwdFile, db.passwdMissing)
	}
	return &db.passwd[i], db.passwd[i].uid, nil
}

// group resolves an explicit group: a gid, listed or not, or a name that
// must be in /etc/group.
func (db *accounts) group(arg string) (uint32, error) {
	if isNumeric(arg) {
		return parseID(arg, "gid")
	}
	if err := db.loadGroups(); err != nil {
		return 0, err
	}
	i := slices.IndexFunc(db.groups, func(g groupEntry) bool { return g.name == arg })
	if i < 0 {
		return 0, fmt.Errorf("group %q: %w", arg, db.notFound(groupFile, db.groupsMissing))
	}
	return db.groups[i].gid, nil
}

// memberOf returns the gids of the groups that list user. An image
// without /etc/group has none.
func (db *accounts) memberOf(user string) ([]uint32, error) {
	if err := db.loadGroups(); err != nil {
		return nil, err
	}
	var gids []uint32
	for _, g := range db.groups {
		if slices.Contains(g.members, user) {
			gids = append(gids, g.gid)
		}
	}
	return gids, nil
}

// notFound says that a name is not in file, or that the image has no file.
func (db *accounts) notFound(file string, missing bool) error {
	if missing {
		return fmt.Errorf("the image at %q has no %s to look it up in (numeric ids work without it): %w", db.rootfs, file, errdefs.ErrNotFound)
	}
	return fmt.Errorf("not in %s of the image at %q: %w", file, db.rootfs, errdefs.ErrNotFound)
}

func isNumeric(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// parseID parses a uid or gid; "" is 0. 4294967295 is (uid_t)-1, which
// the kernel reads as "no change", so it is refused.
func parseID(s, kind string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 1<<32-1 {
		return 0, fmt.Errorf("%s %s: out of range: %w", kind, s, errdefs.ErrInvalidArgument)
	}
	return uint32(n), nil
}

// parsePasswd reads passwd(5) lines, name:password:uid:gid:gecos:home:shell.
// Lines it cannot read (comments, NIS "+" entries, bad ids) are skipped,
// as the C library does.
func parsePasswd(data []byte) []passwdEntry {
	var out []passwdEntry
	for line := range bytes.Lines(data) {
		f := strings.Split(strings.TrimRight(string(line), "\r\n"), ":")
		if len(f) < 4 || !validAccountName(f[0]) {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid)})
	}
	return out
}

// parseGroup reads group(5) lines, name:password:gid:member,member.
func parseGroup(data []byte) []groupEntry {
	var out []groupEntry
	for line := range bytes.Lines(data) {
		f := strings.Split(strings.TrimRight(string(line), "\r\n"), ":")
		if len(f) < 3 || !validAccountName(f[0]) {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		g := groupEntry{name: f[0], gid: uint32(gid)}
		if len(f) > 3 {
			for m := range strings.SplitSeq(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					g.members = append(g.members, m)
				}
			}
		}
		out = append(out, g)
	}
	return out
}

// validAccountName rejects the lines that are no account: blank ones,
// comments and NIS compat entries ("+name", "-name").
func validAccountName(name string) bool {
	return name != "" && !strings.ContainsAny(name[:1], "#+-")
}
