package filters_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/filters"
	"github.com/containerd/errdefs"
)

// object is a test subject with a name, an optional topic and labels.
type object struct {
	name   string
	topic  string
	labels map[string]string
}

func (o object) Field(path []string) (string, bool) {
	switch path[0] {
	case "name":
		return o.name, o.name != ""
	case "topic":
		return o.topic, o.topic != ""
	case "labels":
		v, ok := o.labels[strings.Join(path[1:], ".")]
		return v, ok
	}
	return "", false
}

var corpus = []object{
	0: {name: "foo", labels: map[string]string{"a.b/c": "x", "env": "prod"}},
	1: {name: "bar", topic: "/tasks/exit", labels: map[string]string{"env": "dev"}},
	2: {name: "foo bar", labels: map[string]string{"weird \"key\"": "v1"}},
	3: {topic: "/namespaces/create", labels: map[string]string{"env": ""}},
	4: {name: "v12", labels: map[string]string{"a": "omg_asdf.asdf-qwer"}},
}

func TestParseMatch(t *testing.T) {
	for _, tc := range []struct {
		exprs []string
		want  []int // indexes into corpus
	}{
		{nil, []int{0, 1, 2, 3, 4}},
		{[]string{""}, []int{0, 1, 2, 3, 4}},
		{[]string{"", ""}, []int{0, 1, 2, 3, 4}},
		{[]string{"name==foo", ""}, []int{0, 1, 2, 3, 4}},
		{[]string{"name"}, []int{0, 1, 2, 4}},
		{[]string{"name==foo"}, []int{0}},
		{[]string{"name == foo"}, []int{0}},
		{[]string{`name=="foo bar"`}, []int{2}},
		{[]string{`name=="foo\x20bar"`}, []int{2}},
		{[]string{`name=="\u0066oo"`}, []int{0}},
		{[]string{`name=="\146oo"`}, []int{0}},
		{[]string{`labels."a.b/c"==x`}, []int{0}},
		{[]string{`labels."a.b/c"`}, []int{0}},
		{[]string{`labels."weird \"key\""==v1`}, []int{2}},
		{[]string{"labels.a==omg_asdf.asdf-qwer"}, []int{4}},
		{[]string{"labels.env==prod,name==foo"}, []int{0}},
		{[]string{"labels.env==prod,name==bar"}, nil},
		{[]string{"labels.env"}, []int{0, 1, 3}},
		{[]string{`labels.env==""`}, []int{3}},
		// != treats an absent field as "": it matches objects without one,
		// except when comparing with "".
		{[]string{"name!=foo"}, []int{1, 2, 3, 4}},
		{[]string{`name!=""`}, []int{0, 1, 2, 4}},
		{[]string{"labels.env!=prod"}, []int{1, 2, 3, 4}},
		// ~= is unanchored and also sees an absent field as "".
		{[]string{"name~=^v[0-9]+$"}, []int{4}},
		{[]string{"name~=o"}, []int{0, 2}},
		{[]string{"name~=/^(foo|bar)$/"}, []int{0, 1}},
		{[]string{`name~=|^fo\|o|`}, []int{0, 2}},
		{[]string{`topic~=/^\/tasks\//`}, []int{1}},
		{[]string{`topic~="^/tasks/"`}, []int{1}},
		{[]string{"name~=^$"}, []int{3}},
		{[]string{`topic=="/tasks/exit"`}, []int{1}},
		{[]string{"name==foo", "name==bar"}, []int{0, 1}},
		{[]string{"name==foo", `topic=="/namespaces/create"`, "labels.env==dev"}, []int{0, 1, 3}},
		{[]string{"name==nope", "name==none"}, nil},
	} {
		f, err := filters.Parse(tc.exprs...)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.exprs, err)
			continue
		}
		var got []int
		for i, o := range corpus {
			if f.Match(o) {
				got = append(got, i)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Parse(%q) matched %v, want %v", tc.exprs, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		exprs []string
		want  string
	}{
		{[]string{"name=="}, `filters: parse "name==": expected value at position 6: invalid argument`},
		{[]string{" "}, `filters: parse " ": expected field name at position 1: invalid argument`},
		{[]string{"name==foo", "name=="}, `filters: parse "name==": expected value at position 6: invalid argument`},
		{[]string{"name==foo,"}, `filters: parse "name==foo,": expected field name at position 10: invalid argument`},
		{[]string{"labels."}, `filters: parse "labels.": expected field name at position 7: invalid argument`},
		{[]string{"name=foo"}, `filters: parse "name=foo": unknown operator "=" (want ==, != or ~=) at position 4: invalid argument`},
		{[]string{"name===foo"}, `filters: parse "name===foo": unknown operator "===" (want ==, != or ~=) at position 4: invalid argument`},
		{[]string{"name foo"}, `filters: parse "name foo": expected operator (==, != or ~=), found "foo" at position 5: invalid argument`},
		{[]string{"name==foo "}, `filters: parse "name==foo ": unexpected ' ' after selector at position 9: invalid argument`},
		{[]string{"name==a,b==c d"}, `filters: parse "name==a,b==c d": unexpected ' ' after selector at position 12: invalid argument`},
		{[]string{"image~=,id"}, `filters: parse "image~=,id": expected value, found "," at position 7: invalid argument`},
		{[]string{"?name"}, `filters: parse "?name": expected field name, found "?" at position 0: invalid argument`},
		{[]string{`name=="foo`}, `filters: parse "name==\"foo": quoted string not terminated at position 6: invalid argument`},
		{[]string{`name=="a\qb"`}, `filters: parse "name==\"a\\qb\"": unknown escape sequence at position 8: invalid argument`},
		{[]string{`name=="\777"`}, `filters: parse "name==\"\\777\"": invalid octal escape at position 7: invalid argument`},
		{[]string{`name=="\U00110000"`}, `filters: parse "name==\"\\U00110000\"": invalid \U escape at position 7: invalid argument`},
		{[]string{"name==\"\xff\""}, `filters: parse "name==\"\xff\"": invalid character at position 7: invalid argument`},
		{[]string{"name\x00"}, `filters: parse "name\x00": invalid character at position 4: invalid argument`},
		{[]string{"name~=("}, "filters: parse \"name~=(\": invalid regular expression: error parsing regexp: missing closing ): `(` at position 6: invalid argument"},
		// '/' and '|' quote only regular expressions, as in containerd.
		{[]string{"topic==/tasks/exit"}, `filters: parse "topic==/tasks/exit": '/' quotes only ~= values; use '"' at position 7: invalid argument`},
		{[]string{"topic==/x"}, `filters: parse "topic==/x": quoted string not terminated at position 7: invalid argument`},
		{[]string{"labels.a.b/c"}, `filters: parse "labels.a.b/c": quoted string not terminated at position 10: invalid argument`},
		{[]string{"labels.|a|"}, `filters: parse "labels.|a|": field names are quoted with '"', not '|' at position 7: invalid argument`},
		{[]string{`name~=/\d/`}, `filters: parse "name~=/\\d/": unknown escape sequence at position 7: invalid argument`},
	} {
		f, err := filters.Parse(tc.exprs...)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want error %s", tc.exprs, f, tc.want)
			continue
		}
		if got := err.Error(); got != tc.want {
			t.Errorf("Parse(%q) error:\n got %s\nwant %s", tc.exprs, got, tc.want)
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Parse(%q) error %v is not InvalidArgument", tc.exprs, err)
		}
	}
}
