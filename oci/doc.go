// Package oci builds the OCI runtime spec (config.json) of a Linux
// container: containerd-like defaults from GenerateSpec, changed by SpecOpts
// in the order given, plus the two look-ups a `run` needs before it can
// write a spec: ResolveUser (a docker-style user against the image's
// /etc/passwd and /etc/group) and ParseVolume (`-v host:ctr[:opts]`).
//
// # Defaults
//
// GenerateSpec starts from the facts of containerd 1.6's default Unix spec,
// so that a container started by berth behaves like one started by ctr or
// nerdctl on containerd 1.6, which is what images and scripts expect:
//
//   - process: no args (the caller sets them), PATH only in the environment,
//     cwd "/", user 0:0, RLIMIT_NOFILE 1024/1024; no_new_privileges off, as
//     docker has it (containerd's default turns it on), so that set-uid
//     binaries such as su and ping work as images expect;
//   - capabilities: docker's and containerd 1.6's fourteen (CHOWN,
//     DAC_OVERRIDE, FSETID, FOWNER, MKNOD, NET_RAW, SETGID, SETUID, SETFCAP,
//     SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, KILL, AUDIT_WRITE) in the
//     bounding, effective and permitted sets; never inheritable or ambient,
//     which would hand them across execve to non-root programs
//     (CVE-2022-24769);
//   - mounts: /proc, a tmpfs /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys
//     read-only, /sys/fs/cgroup read-only. containerd's default also puts a
//     tmpfs on /run; berth, like docker, does not, so that an image's own
//     files under /run stay visible;
//   - namespaces: pid, ipc, uts, mount and network of its own; cgroupsPath
//     "/<namespace>/<id>", as containerd writes it;
//   - masked and read-only paths in /proc and /sys, containerd's lists;
//   - device cgroup: deny all, then allow null, zero, full, random, urandom,
//     tty, console, ptmx and the pts devices (containerd also allows tun,
//     10:200; berth does not: a container that needs it says so, e.g. with
//     a privileged run);
//   - seccomp: the moby default profile (github.com/moby/profiles/seccomp)
//     for the running architecture, with its capability-conditional rules
//     decided against the finished spec's bounding set, so that adding
//     CAP_SYS_ADMIN also allows mount(2) as it does under docker;
//   - no hostname (containerd leaves it empty; WithHostname sets one) and no
//     oom_score_adj (the container inherits the runtime's).
//
// # Options
//
// A SpecOpt changes a spec in place and fails with an errdefs class
// (InvalidArgument, NotFound, NotImplemented) wrapped in a message naming
// what was wrong. Options are applied in order, so that later ones win, with
// one exception: the seccomp profile. GenerateSpec computes it once every
// option has run, from the final capabilities, whatever the order of the
// seccomp and capability options; WithSeccompUnconfined, WithSeccompProfile
// and WithPrivileged choose which profile, the last one given winning. The
// options also work on a spec GenerateSpec did not make: the profile is then
// computed when the option runs, from the capabilities the spec has then.
//
// # Where the host shows through
//
// Two options depend on the process that builds the spec, which is expected
// to run on the host that will run the container: WithPrivileged grants the
// capabilities in this process's bounding set and the devices under /dev,
// and WithOOMScoreAdj clamps a score the runtime could not set (see there).
//
// The package is Linux only.
package oci
