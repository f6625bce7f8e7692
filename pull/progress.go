package pull

import "github.com/opencontainers/go-digest"

// Status is where one blob of a pull stands.
type Status string

// Statuses, in the order a layer goes through them.
const (
	StatusWaiting     Status = "waiting"
	StatusDownloading Status = "downloading"
	StatusUnpacking   Status = "unpacking"
	StatusUnpacked    Status = "unpacked"
	StatusDone        Status = "done"
	StatusExists      Status = "exists"
	StatusFailed      Status = "failed"
)

// Progress reports one blob: Kind is "index", "manifest", "config" or
// "layer"; Offset of Total bytes have arrived.
type Progress struct {
	Kind   string
	Digest digest.Digest
	Status Status
	Offset int64
	Total  int64
}
