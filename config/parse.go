package config

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// pos is where a key or value was written.
type pos struct {
	File string
	Line int
	Col  int
}

type itemKind uint8

const (
	kindScalar itemKind = iota
	kindTable
	kindArray
)

// item is one node of a parsed TOML document, annotated with the position it
// was first written at. go-toml decodes straight into Go values and forgets
// positions, so berth keeps its own tree to report file:line for warnings and
// errors long after parsing, when a plugin section is finally decoded.
type item struct {
	kind  itemKind
	pos   pos
	val   any              // kindScalar: string, int64, float64, bool, time.Time, toml.Local*
	text  string           // kindScalar: the value as written, for encoding.TextUnmarshaler
	table map[string]*item // kindTable
	keys  []string         // kindTable: keys in the order they were written
	array []*item          // kindArray

	// Bookkeeping for TOML's redefinition rules while parsing.
	sealed   bool // inline table or static array: cannot be extended
	explicit bool // table opened by a [header]
	dotted   bool // table created by a dotted key
	tableArr bool // array created by [[header]]
}

func newTable(at pos) *item {
	return &item{kind: kindTable, pos: at, table: map[string]*item{}}
}

// add sets key k of table t; k must not exist yet.
func (t *item) add(k string, c *item) {
	t.table[k] = c
	t.keys = append(t.keys, k)
}

// lookup follows keys through nested tables; nil when any is missing.
func (t *item) lookup(keys ...string) *item {
	for _, k := range keys {
		if t == nil || t.kind != kindTable {
			return nil
		}
		t = t.table[k]
	}
	return t
}

// parse turns a TOML document into an item tree. go-toml validates the
// document first; it locates syntax errors but not every redefinition error,
// so those are located by the walk over the unstable parser's AST.
func parse(file string, data []byte) (*item, error) {
	checkErr := syntaxCheck(file, data)
	if checkErr != nil && checkErr.Line > 0 {
		return nil, checkErr
	}
	p := newParser(file, data)
	if err := p.run(data); err != nil {
		return nil, err
	}
	if checkErr != nil {
		return nil, checkErr
	}
	return p.root, nil
}

func syntaxCheck(file string, data []byte) *Error {
	var m map[string]any
	err := toml.Unmarshal(data, &m)
	if err == nil {
		return nil
	}
	e := &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		e.Line, e.Column = de.Position()
	}
	return e
}

type parser struct {
	file   string
	lines  []int // byte offset at which each line starts
	root   *item
	cur    *item  // table that key/value lines go to
	curKey string // dotted key of cur, for messages
}

func newParser(file string, data []byte) *parser {
	lines := []int{0}
	for i, b := range data {
		if b == '\n' {
			lines = append(lines, i+1)
		}
	}
	root := newTable(pos{File: file})
	return &parser{file: file, lines: lines, root: root, cur: root}
}

func (p *parser) run(data []byte) error {
	var up unstable.Parser
	up.Reset(data)
	for up.NextExpression() {
		if err := p.expression(up.Expression()); err != nil {
			return err
		}
	}
	if err := up.Error(); err != nil {
		return &Error{File: p.file, Msg: err.Error()}
	}
	return nil
}

func (p *parser) expression(n *unstable.Node) error {
	switch n.Kind {
	case unstable.Table:
		return p.stdTable(p.keyParts(n))
	case unstable.ArrayTable:
		return p.arrayTable(p.keyParts(n))
	case unstable.KeyValue:
		return p.keyValue(p.cur, p.curKey, n)
	}
	return nil
}

// position converts a byte range to a position; ok is false for nodes the
// parser did not record a range for.
func (p *parser) position(r unstable.Range) (at pos, ok bool) {
	if r.Length == 0 {
		return pos{}, false
	}
	off := int(r.Offset)
	line := sort.Search(len(p.lines), func(i int) bool { return p.lines[i] > off })
	return pos{File: p.file, Line: line, Col: off - p.lines[line-1] + 1}, true
}

type keyPart struct {
	name string
	pos  pos
}

func (p *parser) keyParts(n *unstable.Node) []keyPart {
	var parts []keyPart
	it := n.Key()
	for it.Next() {
		k := it.Node()
		at, _ := p.position(k.Raw)
		parts = append(parts, keyPart{name: string(k.Data), pos: at})
	}
	return parts
}

func redefined(at pos, key string, prev *item) *Error {
	msg := fmt.Sprintf("already defined as %s at line %d", describe(prev), prev.pos.Line)
	return &Error{File: at.File, Line: at.Line, Column: at.Col, Key: key, Msg: msg}
}

// walkHeader descends the leading parts of a [header] or [[header]],
// creating implicit tables and entering the last element of table arrays.
func (p *parser) walkHeader(parts []keyPart) (*item, string, error) {
	t, key := p.root, ""
	for _, part := range parts {
		key = joinKey(key, part.name)
		c := t.table[part.name]
		switch {
		case c == nil:
			c = newTable(part.pos)
			t.add(part.name, c)
		case c.kind == kindTable && !c.sealed:
		case c.kind == kindArray && c.tableArr && len(c.array) > 0:
			c = c.array[len(c.array)-1]
		default:
			return nil, "", redefined(part.pos, key, c)
		}
		t = c
	}
	return t, key, nil
}

func (p *parser) stdTable(parts []keyPart) error {
	t, key, err := p.walkHeader(parts[:len(parts)-1])
	if err != nil {
		return err
	}
	last := parts[len(parts)-1]
	key = joinKey(key, last.name)
	c := t.table[last.name]
	switch {
	case c == nil:
		c = newTable(last.pos)
		t.add(last.name, c)
	case c.kind != kindTable || c.explicit || c.dotted || c.sealed:
		return redefined(last.pos, key, c)
	}
	c.explicit = true
	p.cur, p.curKey = c, key
	return nil
}

func (p *parser) arrayTable(parts []keyPart) error {
	t, key, err := p.walkHeader(parts[:len(parts)-1])
	if err != nil {
		return err
	}
	last := parts[len(parts)-1]
	key = joinKey(key, last.name)
	c := t.table[last.name]
	switch {
	case c == nil:
		c = &item{kind: kindArray, pos: last.pos, tableArr: true}
		t.add(last.name, c)
	case c.kind != kindArray || !c.tableArr:
		return redefined(last.pos, key, c)
	}
	e := newTable(last.pos)
	e.explicit = true
	c.array = append(c.array, e)
	p.cur, p.curKey = e, indexKey(key, len(c.array)-1)
	return nil
}

// keyValue adds `a.b.c = value` to table t whose dotted key is prefix.
func (p *parser) keyValue(t *item, prefix string, n *unstable.Node) error {
	parts := p.keyParts(n)
	key := prefix
	for _, part := range parts[:len(parts)-1] {
		key = joinKey(key, part.name)
		c := t.table[part.name]
		switch {
		case c == nil:
			c = newTable(part.pos)
			c.dotted = true
			t.add(part.name, c)
		case c.kind != kindTable || c.sealed || c.explicit:
			return redefined(part.pos, key, c)
		}
		t = c
	}
	last := parts[len(parts)-1]
	key = joinKey(key, last.name)
	if c := t.table[last.name]; c != nil {
		return redefined(last.pos, key, c)
	}
	v, err := p.value(n.Value(), last.pos, key)
	if err != nil {
		return err
	}
	t.add(last.name, v)
	return nil
}

// value converts a value node; at is used where the node has no range.
func (p *parser) value(n *unstable.Node, at pos, key string) (*item, error) {
	switch n.Kind {
	case unstable.InlineTable:
		t := newTable(at)
		it := n.Children()
		for it.Next() {
			if kv := it.Node(); kv.Kind == unstable.KeyValue {
				if err := p.keyValue(t, key, kv); err != nil {
					return nil, err
				}
			}
		}
		seal(t)
		return t, nil
	case unstable.Array:
		return p.array(n, at, key)
	}
	v, err := scalar(n)
	if err != nil {
		return nil, &Error{File: at.File, Line: at.Line, Column: at.Col, Key: key, Msg: err.Error()}
	}
	return &item{kind: kindScalar, pos: at, val: v, text: string(n.Data)}, nil
}

func (p *parser) array(n *unstable.Node, at pos, key string) (*item, error) {
	a := &item{kind: kindArray, pos: at, sealed: true}
	it := n.Children()
	for it.Next() {
		e := it.Node()
		if e.Kind == unstable.Comment {
			continue
		}
		epos, ok := p.position(e.Raw)
		if !ok {
			epos = at
		}
		v, err := p.value(e, epos, indexKey(key, len(a.array)))
		if err != nil {
			return nil, err
		}
		a.array = append(a.array, v)
	}
	return a, nil
}

// seal marks an inline table and everything in it as closed to extension.
func seal(it *item) {
	it.sealed = true
	for _, c := range it.table {
		seal(c)
	}
	for _, c := range it.array {
		seal(c)
	}
}

// scalar converts a scalar node. The document was validated by go-toml
// already, so the literal forms are known to be well formed.
func scalar(n *unstable.Node) (any, error) {
	s := string(n.Data)
	switch n.Kind {
	case unstable.String:
		return s, nil
	case unstable.Bool:
		return s == "true", nil
	case unstable.Integer:
		return strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
	case unstable.Float:
		if strings.HasSuffix(s, "nan") {
			return math.NaN(), nil
		}
		return strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
	case unstable.DateTime, unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime:
		return dateTime(s)
	}
	return nil, fmt.Errorf("unexpected TOML node %s", n.Kind)
}

// dateTime lets go-toml interpret the rare date-time literal, so berth does
// not carry a second implementation of its four formats.
func dateTime(s string) (any, error) {
	var v struct{ V any }
	if err := toml.Unmarshal([]byte("V = "+s), &v); err != nil {
		return nil, err
	}
	return v.V, nil
}

// describe names the TOML type of an item for messages.
func describe(it *item) string {
	switch it.kind {
	case kindTable:
		switch {
		case it.sealed:
			return "an inline table"
		case it.dotted:
			return "a table by dotted keys"
		}
		return "a table"
	case kindArray:
		if it.tableArr {
			return "an array of tables"
		}
		return "an array"
	}
	t := typeName(it)
	if strings.IndexAny(t, "aeiou") == 0 {
		return "an " + t
	}
	return "a " + t
}

// typeName is the TOML name of an item's type.
func typeName(it *item) string {
	switch it.kind {
	case kindTable:
		return "table"
	case kindArray:
		return "array"
	}
	switch it.val.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	}
	return "datetime"
}
