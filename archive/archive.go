// Package archive applies OCI image layers to directories and computes layers
// from directory trees.
//
// A layer is an uncompressed tar change set (image-spec layer.md): entries
// add or replace files, ".wh.NAME" deletes NAME from the layers below, and
// ".wh..wh..opq" hides everything below a directory. Apply writes one layer
// into a directory, either a fully mounted rootfs (whiteouts delete) or an
// overlayfs upperdir (whiteouts become overlay's own markers). WriteDiff and
// WriteDiffOverlay produce layers from two plain trees or from an upperdir.
//
// Layers are untrusted input. Apply never creates, changes or removes
// anything outside its root: every path is resolved inside the root with
// openat2(RESOLVE_IN_ROOT) or, on kernels without it, an equivalent
// component-by-component walk over directory file descriptors, and every
// change is made relative to a directory descriptor with O_NOFOLLOW
// semantics on the last component.
package archive

import (
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
)

const (
	// whiteoutPrefix marks a deletion: ".wh.NAME" removes NAME.
	whiteoutPrefix = ".wh."
	// whiteoutMetaPrefix starts names reserved for whiteout metadata.
	whiteoutMetaPrefix = whiteoutPrefix + whiteoutPrefix
	// whiteoutOpaque makes its directory opaque.
	whiteoutOpaque = whiteoutMetaPrefix + ".opq"

	// paxXattr prefixes extended attributes in PAX records.
	paxXattr = "SCHILY.xattr."

	// overlayOpaqueXattr marks an opaque directory in an overlay upperdir.
	overlayOpaqueXattr = "trusted.overlay.opaque"
)

// errEscape is the error for any entry that would reach outside the root.
var errEscape = fmt.Errorf("path escapes the root: %w", errdefs.ErrInvalidArgument)

// copyBufSize is the chunk in which file contents are copied. Large chunks
// mean few write(2) calls; the pool keeps one per concurrent Apply or
// WriteDiff rather than one per file.
const copyBufSize = 1 << 20

var copyBufPool = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}
