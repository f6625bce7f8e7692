package workdir

import (
	"os"
	"path/filepath"
	"testing"
)

func TestClaim(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w")
	if err := Claim(dir); err != nil {
		t.Fatalf("new dir: %v", err)
	}
	if err := Claim(dir); err != nil {
		t.Fatalf("marked dir: %v", err)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "precious"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Claim(other); err == nil {
		t.Error("claimed a non-empty dir without the marker")
	}
}
