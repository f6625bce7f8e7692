// Package version holds berth's version, set at build time.
package version

var (
	// Version is what the version service reports. It reads as the
	// containerd API level berth speaks, with berth's own version as
	// semver build metadata, so tools that compare containerd versions
	// keep working.
	Version = "v1.7.0+berth.0.1.0"
	// Revision is the git commit, set with -ldflags -X.
	Revision = "unknown"
)
