package config

import (
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// TestParseAgreesWithGoTOML checks that berth's positioned tree accepts what
// go-toml accepts, holds the same values, and locates what go-toml rejects.
// (During development the same check passed on go-toml's 513 toml-test cases.)
func TestParseAgreesWithGoTOML(t *testing.T) {
	docs := []string{
		"",
		"a = 1\nb = 'x'\nc = true\nd = 1.5\ne = [1, 'two', [3]]\n",
		"n = 0x1F\no = 0o17\nb = 0b101\nu = 1_000\nneg = -3\npos = +4\n",
		"f = 6.02e23\ni = inf\nm = -inf\nz = -0.0\nu = 1_0.5_1\n",
		"odt = 1979-05-27T07:32:00.999-07:00\nsp = 1979-05-27 07:32:00Z\nld = 1979-05-27\nlt = 07:32:00\nldt = 1979-05-27T07:32:00\n",
		"s = \"tab\\tnew\\nu\\u00e9\"\nml = \"\"\"\nline\\\n  joined\"\"\"\nlit = '''\nraw\\n'''\n",
		"a.b.c = 1\na.b.d = 2\n[x]\ny.z = 3\n",
		"[a.b.c]\nz = 1\n[a]\nq = 2\n[a.b]\nr = 3\n",
		"[[fruit]]\nname = 'apple'\n[fruit.physical]\ncolor = 'red'\n[[fruit.variety]]\nname = 'red delicious'\n[[fruit]]\nname = 'banana'\n",
		"t = {a = 1, b.c = {d = 2}}\narr = [{x = 1}, {x = 2, y = [{z = 3}]}]\n",
		"'quoted.key' = 1\n\"dq\" = 2\n[plugins.'io.containerd.grpc.v1.cri'.containerd]\ns = 1\n",
		"# comment\n[a] # c\nb = [ # c\n 1, # c\n 2,\n] # c\n",
		"a = 1\na = 2\n",
		"[a]\n[a]\n",
		"a.b = 1\n[a]\n",
		"a = {b = 1}\na.c = 2\n",
		"a = [1]\n[[a]]\n",
		"[[a]]\n[a]\n",
		"[a.b]\nz = 1\n[a]\nb.y = 2\n",
		"a = 1\n[a.b]\n",
		"x = [1,\n",
		"x = 0_1\n",
		"x = 9223372036854775808\n",
		"x = 1979-13-27\n",
	}
	for _, doc := range docs {
		var want map[string]any
		werr := toml.Unmarshal([]byte(doc), &want)
		root, err := parse("t.toml", []byte(doc))
		switch {
		case werr == nil && err != nil:
			t.Errorf("%q: go-toml accepts, parse says %v", doc, err)
		case werr != nil && err == nil:
			t.Errorf("%q: go-toml says %v, parse accepts", doc, werr)
		case werr != nil && err.(*Error).Line == 0:
			t.Errorf("%q: error without position: %v", doc, err)
		case werr == nil && !sameValue(plain(root), any(want)):
			t.Errorf("%q: values differ\n got %#v\nwant %#v", doc, plain(root), want)
		}
	}
}

// sameValue is reflect.DeepEqual with NaN equal to itself.
func sameValue(a, b any) bool {
	switch av := a.(type) {
	case float64:
		bv, ok := b.(float64)
		return ok && (av == bv || math.IsNaN(av) && math.IsNaN(bv))
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k := range av {
			if !sameValue(av[k], bv[k]) {
				return false
			}
		}
		return true
	case []any:
		bv, ok := b.([]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for i := range av {
			if !sameValue(av[i], bv[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

func TestParsePositions(t *testing.T) {
	doc := "top = 1\n[grpc]\n  address = 'x'\n\n[a.'b.c']\n    d.e = 2\n[[arr]]\nk = 1\n[[arr]]\n  k = 2\nin = {x = 1}\nlist = [\n  1,\n  {y = 2},\n]\n"
	root, err := parse("f.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		it        *item
		line, col int
	}{
		{root.lookup("top"), 1, 1},
		{root.lookup("grpc"), 2, 2},
		{root.lookup("grpc", "address"), 3, 3},
		{root.lookup("a"), 5, 2},
		{root.lookup("a", "b.c"), 5, 4},
		{root.lookup("a", "b.c", "d"), 6, 5},
		{root.lookup("a", "b.c", "d", "e"), 6, 7},
		{root.lookup("arr").array[0].lookup("k"), 8, 1},
		{root.lookup("arr").array[1], 9, 3},
		{root.lookup("arr").array[1].lookup("k"), 10, 3},
		{root.lookup("arr").array[1].lookup("in", "x"), 11, 7},
		{root.lookup("arr").array[1].lookup("list").array[0], 13, 3},
		{root.lookup("arr").array[1].lookup("list").array[1].lookup("y"), 14, 4},
	}
	for i, tt := range tests {
		if tt.it == nil {
			t.Errorf("%d: item missing", i)
			continue
		}
		if got := tt.it.pos; got != (pos{File: "f.toml", Line: tt.line, Col: tt.col}) {
			t.Errorf("%d: pos = %+v, want %d:%d", i, got, tt.line, tt.col)
		}
	}
}

func TestParseDateTime(t *testing.T) {
	root, err := parse("f.toml", []byte("t = 1979-05-27T00:32:00-07:00\nd = 1979-05-27\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(1979, 5, 27, 7, 32, 0, 0, time.UTC)
	if got, ok := root.lookup("t").val.(time.Time); !ok || !got.Equal(want) {
		t.Errorf("t = %#v, want %v", root.lookup("t").val, want)
	}
	if got := root.lookup("d").val; got != (toml.LocalDate{Year: 1979, Month: 5, Day: 27}) {
		t.Errorf("d = %#v", got)
	}
}

func TestQuoteKey(t *testing.T) {
	for in, want := range map[string]string{
		"bare_key-1":                "bare_key-1",
		"io.containerd.grpc.v1.cri": "'io.containerd.grpc.v1.cri'",
		"":                          "''",
		"it's":                      `"it's"`,
		"tab\there":                 `"tab\there"`,
	} {
		if got := quoteKey(in); got != want {
			t.Errorf("quoteKey(%q) = %s, want %s", in, got, want)
		}
	}
}
