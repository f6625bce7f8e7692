package identifiers

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want string // part of the error; "" when valid
	}{
		{"default", ""},
		{"k8s.io", ""},
		{"moby", ""},
		{"a", ""},
		{"0", ""},
		{"A-Z_0.9", ""},
		{"foo.bar-baz_qux", ""},
		{"sha256-abc", ""},
		{strings.Repeat("a", MaxLength), ""},

		{"", "must not be empty"},
		{strings.Repeat("a", MaxLength+1), "77 characters, longer than the maximum of 76"},
		{"-leading", "must match"},
		{"trailing-", "must match"},
		{".dot", "must match"},
		{"dot.", "must match"},
		{"_under", "must match"},
		{"a..b", "must match"},
		{"a-_b", "must match"},
		{"a--b", "must match"},
		{"has space", "must match"},
		{"slash/ed", "must match"},
		{"colon:ed", "must match"},
		{"tab\t", "must match"},
		{"ünïcode", "must match"},
		{"new\nline", "must match"},
	} {
		err := Validate(tc.id)
		if tc.want == "" {
			if err != nil {
				t.Errorf("Validate(%q) = %v, want nil", tc.id, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Validate(%q) = nil, want an error mentioning %q", tc.id, tc.want)
			continue
		}
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("Validate(%q) = %v, want InvalidArgument", tc.id, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%q) = %q, want it to mention %q", tc.id, err, tc.want)
		}
	}
}

// The error names the identifier, so that a user sees which one is wrong.
func TestValidateNamesIdentifier(t *testing.T) {
	err := Validate("bad name")
	if err == nil || !strings.Contains(err.Error(), `"bad name"`) {
		t.Errorf("Validate(%q) = %v, want the identifier quoted in it", "bad name", err)
	}
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"default", "a.b", "", "-x", strings.Repeat("z", 80)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := Validate(s)
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Fatalf("Validate(%q) = %v: not InvalidArgument", s, err)
		}
		if err == nil && (len(s) == 0 || len(s) > MaxLength || strings.ContainsAny(s, " /:\x00")) {
			t.Fatalf("Validate(%q) accepted an invalid identifier", s)
		}
	})
}
