package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// decodeDoc decodes a whole document into v (a pointer).
func decodeDoc(t *testing.T, doc string, v any) ([]Warning, error) {
	t.Helper()
	root, err := parse("d.toml", []byte(doc))
	if err != nil {
		t.Fatalf("parse(%q): %v", doc, err)
	}
	var d decoder
	err = d.decode(root, "", reflect.ValueOf(v).Elem())
	return d.warnings, err
}

type upper string

func (u *upper) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("empty")
	}
	*u = upper(strings.ToUpper(string(b)))
	return nil
}

type Inner struct {
	Shared string `toml:"shared"`
	Deep   int    `toml:"deep"`
}

type target struct {
	Inner
	Shared   string            `toml:"shared"` // shadows Inner.Shared
	Name     string            // matched case-insensitively
	Skip     string            `toml:"-"`
	I8       int8              `toml:"i8"`
	U16      uint16            `toml:"u16"`
	F32      float32           `toml:"f32"`
	F64      float64           `toml:"f64"`
	Dur      time.Duration     `toml:"dur"`
	DurN     time.Duration     `toml:"dur_n"`
	When     time.Time         `toml:"when"`
	Up       upper             `toml:"up"`
	Up2      upper             `toml:"up2"`
	Ptr      *int              `toml:"ptr"`
	List     []string          `toml:"list"`
	Fixed    [2]int            `toml:"fixed"`
	Tables   []Inner           `toml:"tables"`
	Counts   map[string]int    `toml:"counts"`
	Any      any               `toml:"any"`
	Nested   map[string]*Inner `toml:"nested"`
	Unused   string            `toml:"unused" berth:"unimplemented"`
	unexport int
}

func TestDecodeValues(t *testing.T) {
	doc := `shared = "outer"
deep = 7
NAME = "n"
i8 = -128
u16 = 65535
f32 = 1.5
f64 = 3
dur = "1m30s"
dur_n = 5
when = 2024-01-02T03:04:05Z
up = "abc"
up2 = 0x1f
ptr = 42
list = ["a", "b"]
fixed = [1]
counts = {x = 1, y = 2}
any = {k = [1, "two"]}
unused = ""
[[tables]]
shared = "t0"
[[tables]]
deep = 1
[nested.a]
deep = 3
`
	v := target{Fixed: [2]int{9, 9}, Nested: map[string]*Inner{"a": {Shared: "keep"}}}
	ws, err := decodeDoc(t, doc, &v)
	if err != nil || len(ws) != 0 {
		t.Fatalf("decode: %v %v", ws, err)
	}
	ptr := 42
	want := target{
		Inner: Inner{Deep: 7}, Shared: "outer", Name: "n", I8: -128, U16: 65535, F32: 1.5, F64: 3,
		Dur: 90 * time.Second, DurN: 5, When: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Up: "ABC", Up2: "0X1F",
		Ptr: &ptr, List: []string{"a", "b"}, Fixed: [2]int{1, 0},
		Tables: []Inner{{Shared: "t0"}, {Deep: 1}}, Counts: map[string]int{"x": 1, "y": 2},
		Any:    map[string]any{"k": []any{int64(1), "two"}},
		Nested: map[string]*Inner{"a": {Shared: "keep", Deep: 3}},
	}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("got  %+v\nwant %+v", v, want)
	}
}

func TestDecodeWarnings(t *testing.T) {
	doc := "skip = 'x'\nunexport = 1\nnope = 2\nunused = 'set'\n[nested.a]\nextra = 3\n"
	var v target
	ws, err := decodeDoc(t, doc, &v)
	if err != nil {
		t.Fatal(err)
	}
	w := func(line int, key string) Warning {
		return Warning{File: "d.toml", Line: line, Key: key, Msg: msgIgnored}
	}
	wantWarnings(t, ws, []Warning{w(1, "skip"), w(2, "unexport"), w(3, "nope"), w(4, "unused"), w(6, "nested.a.extra")})
	if v.Skip != "" || v.Unused != "set" {
		t.Errorf("Skip %q, Unused %q", v.Skip, v.Unused)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct{ doc, want string }{
		{"i8 = 128", `d.toml:1:1: key "i8": 128 out of range for int8`},
		{"u16 = -1", `d.toml:1:1: key "u16": -1 out of range for uint16`},
		{"f32 = 1e300", `d.toml:1:1: key "f32": 1e+300 out of range for float32`},
		{"f64 = 'x'", `d.toml:1:1: key "f64": expected float, got string`},
		{"dur = 'soon'", `d.toml:1:1: key "dur": invalid duration "soon"`},
		{"dur = true", `d.toml:1:1: key "dur": expected duration string or integer, got boolean`},
		{"when = 5", `d.toml:1:1: key "when": invalid value "5": parsing time`},
		{"up = ''", `d.toml:1:1: key "up": invalid value "": empty`},
		{"up = {a = 1}", `d.toml:1:1: key "up": expected string, got table`},
		{"name = 1979-05-27", `d.toml:1:1: key "name": expected string, got datetime`},
		{"fixed = [1, 2, 3]", `d.toml:1:1: key "fixed": array has 3 elements, at most 2 allowed`},
		{"list = [1]", `d.toml:1:9: key "list[0]": expected string, got integer`},
		{"[[tables]]\n[[tables]]\ndeep = 'x'", `d.toml:3:1: key "tables[1].deep": expected integer, got string`},
		{"counts = 1", `d.toml:1:1: key "counts": expected table, got integer`},
		{"[counts]\nx = 'y'", `d.toml:2:1: key "counts.x": expected integer, got string`},
		{"tables = {a = 1}", `d.toml:1:1: key "tables": expected array, got table`},
		{"unused = 1", `d.toml:1:1: key "unused": expected string, got integer`},
		{"[nested]\na = 1", `d.toml:2:1: key "nested.a": expected table, got integer`},
	}
	for _, tt := range tests {
		var v target
		_, err := decodeDoc(t, tt.doc, &v)
		if err == nil || !strings.HasPrefix(err.Error(), "config "+tt.want) {
			t.Errorf("%q: err = %v\nwant         config %s", tt.doc, err, tt.want)
		}
	}
}

func TestDecodeUnsupportedTargets(t *testing.T) {
	var badKey map[int]string
	if _, err := decodeDoc(t, "a = 1", &badKey); err == nil || !strings.Contains(err.Error(), "keys must be strings") {
		t.Errorf("map[int]string: %v", err)
	}
	var iface struct{ S fmt.Stringer }
	if _, err := decodeDoc(t, "s = 'x'", &iface); err == nil || !strings.Contains(err.Error(), "cannot decode into Go type fmt.Stringer") {
		t.Errorf("fmt.Stringer: %v", err)
	}
	var ch struct{ C chan int }
	if _, err := decodeDoc(t, "c = 1", &ch); err == nil || !strings.Contains(err.Error(), "cannot decode into Go type chan int") {
		t.Errorf("chan: %v", err)
	}
}
