package config

import (
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strconv"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

func TestZZAgree(t *testing.T) {
	b, _ := os.ReadFile("/tmp/cases.json")
	var cases []struct {
		Name, Input string
		Valid       bool
	}
	json.Unmarshal(b, &cases)
	unpos := 0
	for _, c := range cases {
		in, err := strconv.Unquote(c.Input)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		gerr := toml.Unmarshal([]byte(in), &m)
		p := newParser("x", []byte(in))
		var werr error
		if gerr == nil || syntaxCheck("x", []byte(in)).Line == 0 {
			werr = p.run([]byte(in))
		}
		root, perr := parse("x", []byte(in))
		switch {
		case gerr == nil && werr != nil:
			t.Errorf("%s: walker stricter: %v\n%s", c.Name, werr, in)
		case gerr != nil && perr != nil && perr.(*Error).Line == 0:
			unpos++
			t.Logf("%s: no position: %v / walker %v\n%s", c.Name, gerr, werr, in)
		case gerr == nil:
			if got := plain(root); !equalNaN(got, any(m)) {
				t.Errorf("%s: values differ\n got %#v\nwant %#v", c.Name, got, m)
			}
		}
	}
	t.Logf("%d cases, %d unpositioned", len(cases), unpos)
}

func equalNaN(a, b any) bool {
	if fa, ok := a.(float64); ok {
		if fb, ok := b.(float64); ok && math.IsNaN(fa) && math.IsNaN(fb) {
			return true
		}
	}
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok || len(av) != len(bv) {
			return false
		}
		for k := range av {
			if !equalNaN(av[k], bv[k]) {
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
			if !equalNaN(av[i], bv[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}
