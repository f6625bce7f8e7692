package labels

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		k, v string
		want string // part of the error; "" when valid
	}{
		{"plain", "app", "web", ""},
		{"empty value", "k", "", ""},
		{"gc label", GCRefContent + ".l.0", "sha256:abc", ""},
		{"at the limit", "k", strings.Repeat("v", MaxSize-1), ""},
		{"key at the limit", strings.Repeat("k", MaxSize), "", ""},
		{"unicode", "ключ", "значение", ""},

		{"empty key", "", "v", "key must not be empty"},
		{"one over", "k", strings.Repeat("v", MaxSize), "4097 bytes, over the maximum of 4096"},
		{"long key", strings.Repeat("k", MaxSize+1), "", "over the maximum"},
		// Bytes, not runes: 2049 two-byte runes are 4098 bytes.
		{"multibyte", "k", strings.Repeat("é", 2048), "4097 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.k, tc.v)
			if tc.want == "" {
				if err != nil {
					t.Errorf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want an error mentioning %q", tc.want)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("Validate = %v, want InvalidArgument", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate = %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

// A long key is shortened in the message, which stays readable.
func TestValidateShortensKey(t *testing.T) {
	key := strings.Repeat("k", 5000)
	err := Validate(key, "")
	if err == nil {
		t.Fatal("Validate accepted a 5000-byte key")
	}
	if len(err.Error()) > 300 {
		t.Errorf("message is %d bytes long: %q", len(err.Error()), err)
	}
	if !strings.Contains(err.Error(), strings.Repeat("k", 64)+"...") {
		t.Errorf("message %q does not show the key's first 64 bytes", err)
	}
}

func TestValidateAll(t *testing.T) {
	if err := ValidateAll(nil); err != nil {
		t.Errorf("ValidateAll(nil) = %v", err)
	}
	if err := ValidateAll(map[string]string{"a": "1", "b": ""}); err != nil {
		t.Errorf("ValidateAll(valid) = %v", err)
	}
	err := ValidateAll(map[string]string{"a": "1", "big": strings.Repeat("x", MaxSize)})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"big"`) {
		t.Errorf("ValidateAll(one too big) = %v, want InvalidArgument naming \"big\"", err)
	}
}

// The GC label names are containerd's: a client sets them, berth reads them.
func TestGCLabelNames(t *testing.T) {
	for got, want := range map[string]string{
		GCRoot:        "containerd.io/gc.root",
		GCExpire:      "containerd.io/gc.expire",
		GCRefContent:  "containerd.io/gc.ref.content",
		GCRefSnapshot: "containerd.io/gc.ref.snapshot",
	} {
		if got != want {
			t.Errorf("label %q, want containerd's %q", got, want)
		}
	}
}
