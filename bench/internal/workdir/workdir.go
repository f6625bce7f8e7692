// Package workdir guards a benchmark's work directory: a bench deletes
// what it writes there, so it only ever writes into a directory that is
// empty or marked as a bench workdir.
package workdir

import (
	"fmt"
	"os"
	"path/filepath"
)

// Marker is the file that marks a bench workdir; the run.sh scripts create
// it too.
const Marker = ".berth-bench"

// Claim creates dir with the marker, or checks that an existing non-empty
// dir has it.
func Claim(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, Marker)); err != nil {
			return fmt.Errorf("workdir %s is not empty and not a bench workdir (no %s): pick another -workdir", dir, Marker)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, Marker), nil, 0o644)
}
