package filters_test

import (
	"errors"
	"testing"

	"github.com/berth-dev/berth/filters"
	"github.com/containerd/errdefs"
)

// FuzzParse checks that Parse never panics, that its errors are
// InvalidArgument, and that whatever it accepts can match objects.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"", "name", "name==foo", `labels."a.b/c"==x`, `topic=="/tasks/exit"`,
		"name!=foo,labels.env", "name~=/^v[0-9]+$/", `name~=|a\|b|`, `name=="\u00e9\x41\101"`,
		"name == foo", "labels.a.b/c", "name==\xff", `name~=(`,
	} {
		f.Add(seed, "name==bar")
	}
	f.Fuzz(func(t *testing.T, expr, other string) {
		filter, err := filters.Parse(expr, other)
		if err != nil {
			if filter != nil {
				t.Fatalf("Parse(%q, %q) returned both a filter and %v", expr, other, err)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Parse(%q, %q) error %v is not InvalidArgument", expr, other, err)
			}
			return
		}
		for _, o := range corpus {
			filter.Match(o)
		}
		filter.Match(filters.AdaptorFunc(func([]string) (string, bool) { return expr, true }))
	})
}
