package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"time"
)

// decoder copies an item tree into Go values following `toml` struct tags the
// way go-toml does (exact name first, then case-insensitive; embedded structs
// flattened; "-" skipped). Unlike go-toml it knows where every key was
// written, so it reports unknown keys as warnings and type mismatches as
// errors with file, line and the full dotted key.
//
// A field tagged `berth:"unimplemented"` is decoded and type-checked like any
// other, but setting it to a non-zero value yields one warning, and unknown
// keys below it are not reported separately.
type decoder struct {
	warnings []Warning
}

var (
	itemPtrType     = reflect.TypeFor[*item]()
	durationType    = reflect.TypeFor[time.Duration]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (d *decoder) decode(it *item, key string, v reflect.Value) error {
	if v.Type() == itemPtrType {
		v.Set(reflect.ValueOf(it))
		return nil
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return d.decode(it, key, v.Elem())
	}
	if it.kind == kindScalar && reflect.TypeOf(it.val).AssignableTo(v.Type()) {
		v.Set(reflect.ValueOf(it.val))
		return nil
	}
	if ok, err := decodeText(it, key, v); ok {
		return err
	}
	switch v.Kind() {
	case reflect.Interface:
		return decodeInterface(it, key, v)
	case reflect.Struct:
		return d.decodeStruct(it, key, v)
	case reflect.Map:
		return d.decodeMap(it, key, v)
	case reflect.Slice, reflect.Array:
		return d.decodeArray(it, key, v)
	}
	return decodeScalar(it, key, v)
}

// decodeText hands a scalar, as written, to a type implementing
// encoding.TextUnmarshaler, as go-toml does; tables and arrays decode
// field by field.
func decodeText(it *item, key string, v reflect.Value) (bool, error) {
	if it.kind != kindScalar || !v.CanAddr() || !reflect.PointerTo(v.Type()).Implements(textUnmarshaler) {
		return false, nil
	}
	if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(it.text)); err != nil {
		return true, errorAt(it, key, fmt.Sprintf("invalid value %q: %v", it.text, err))
	}
	return true, nil
}

func decodeInterface(it *item, key string, v reflect.Value) error {
	if v.NumMethod() != 0 {
		return errorAt(it, key, fmt.Sprintf("cannot decode into Go type %s", v.Type()))
	}
	v.Set(reflect.ValueOf(plain(it)))
	return nil
}

// plain converts an item to the values go-toml produces for `any`.
func plain(it *item) any {
	switch it.kind {
	case kindTable:
		m := make(map[string]any, len(it.table))
		for k, c := range it.table {
			m[k] = plain(c)
		}
		return m
	case kindArray:
		a := make([]any, len(it.array))
		for i, c := range it.array {
			a[i] = plain(c)
		}
		return a
	}
	return it.val
}

func (d *decoder) decodeStruct(it *item, key string, v reflect.Value) error {
	if it.kind != kindTable {
		return mismatch(it, key, "table")
	}
	fields := fieldsOf(v.Type())
	for _, k := range it.keys {
		c, ck := it.table[k], joinKey(key, k)
		f, ok := fields.find(k)
		if !ok {
			d.warnings = append(d.warnings, warnAt(c, ck))
			continue
		}
		var err error
		if f.unimplemented {
			err = d.decodeUnimplemented(c, ck, v.FieldByIndex(f.index))
		} else {
			err = d.decode(c, ck, v.FieldByIndex(f.index))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) decodeUnimplemented(it *item, key string, v reflect.Value) error {
	n := len(d.warnings)
	if err := d.decode(it, key, v); err != nil {
		return err
	}
	d.warnings = d.warnings[:n]
	if !isZero(it) {
		d.warnings = append(d.warnings, warnAt(it, key))
	}
	return nil
}

// isZero reports whether an item holds its type's zero value: writing it
// changes nothing, so setting an unimplemented key to it is not worth a
// warning (containerd's `config default` writes many such keys).
func isZero(it *item) bool {
	switch it.kind {
	case kindTable:
		return len(it.table) == 0
	case kindArray:
		return len(it.array) == 0
	}
	switch v := it.val.(type) {
	case string:
		return v == ""
	case int64:
		return v == 0
	case float64:
		return v == 0
	case bool:
		return !v
	}
	return false
}

func (d *decoder) decodeMap(it *item, key string, v reflect.Value) error {
	if it.kind != kindTable {
		return mismatch(it, key, "table")
	}
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		return errorAt(it, key, fmt.Sprintf("cannot decode into Go type %s: keys must be strings", t))
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(t, len(it.table)))
	}
	for _, k := range it.keys {
		mk := reflect.ValueOf(k).Convert(t.Key())
		elem := reflect.New(t.Elem()).Elem()
		if old := v.MapIndex(mk); old.IsValid() {
			elem.Set(old) // decode on top of what is there, e.g. defaults
		}
		if err := d.decode(it.table[k], joinKey(key, k), elem); err != nil {
			return err
		}
		v.SetMapIndex(mk, elem)
	}
	return nil
}

func (d *decoder) decodeArray(it *item, key string, v reflect.Value) error {
	if it.kind != kindArray {
		return mismatch(it, key, "array")
	}
	n := len(it.array)
	if v.Kind() == reflect.Slice {
		v.Set(reflect.MakeSlice(v.Type(), n, n))
	} else if n > v.Len() {
		return errorAt(it, key, fmt.Sprintf("array has %d elements, at most %d allowed", n, v.Len()))
	}
	for i := 0; i < v.Len(); i++ {
		if i >= n {
			v.Index(i).SetZero()
			continue
		}
		if err := d.decode(it.array[i], indexKey(key, i), v.Index(i)); err != nil {
			return err
		}
	}
	return nil
}

func decodeScalar(it *item, key string, v reflect.Value) error {
	switch v.Kind() {
	case reflect.String:
		s, ok := it.val.(string)
		if !ok {
			return mismatch(it, key, "string")
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := it.val.(bool)
		if !ok {
			return mismatch(it, key, "boolean")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return decodeInt(it, key, v)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return decodeUint(it, key, v)
	case reflect.Float32, reflect.Float64:
		return decodeFloat(it, key, v)
	default:
		return errorAt(it, key, fmt.Sprintf("cannot decode into Go type %s", v.Type()))
	}
	return nil
}

func decodeInt(it *item, key string, v reflect.Value) error {
	if s, ok := it.val.(string); ok && v.Type() == durationType {
		dur, err := time.ParseDuration(s)
		if err != nil {
			return errorAt(it, key, fmt.Sprintf("invalid duration %q", s))
		}
		v.SetInt(int64(dur))
		return nil
	}
	n, ok := it.val.(int64)
	if !ok {
		if v.Type() == durationType {
			return mismatch(it, key, "duration string or integer")
		}
		return mismatch(it, key, "integer")
	}
	if v.OverflowInt(n) {
		return errorAt(it, key, fmt.Sprintf("%d out of range for %s", n, v.Type()))
	}
	v.SetInt(n)
	return nil
}

func decodeUint(it *item, key string, v reflect.Value) error {
	n, ok := it.val.(int64)
	if !ok {
		return mismatch(it, key, "integer")
	}
	if n < 0 || v.OverflowUint(uint64(n)) {
		return errorAt(it, key, fmt.Sprintf("%d out of range for %s", n, v.Type()))
	}
	v.SetUint(uint64(n))
	return nil
}

func decodeFloat(it *item, key string, v reflect.Value) error {
	var f float64
	switch n := it.val.(type) {
	case float64:
		f = n
	case int64:
		f = float64(n)
	default:
		return mismatch(it, key, "float")
	}
	if v.Kind() == reflect.Float32 && !math.IsInf(f, 0) && v.OverflowFloat(f) {
		return errorAt(it, key, fmt.Sprintf("%g out of range for %s", f, v.Type()))
	}
	v.SetFloat(f)
	return nil
}

func mismatch(it *item, key, want string) *Error {
	return errorAt(it, key, fmt.Sprintf("expected %s, got %s", want, typeName(it)))
}

// field is a decodable struct field, possibly inside embedded structs.
type field struct {
	index         []int
	unimplemented bool
}

type fieldSet struct {
	exact map[string]field
	fold  map[string]field // lower-cased names, for case-insensitive matches
}

func (fs fieldSet) find(k string) (field, bool) {
	if f, ok := fs.exact[k]; ok {
		return f, true
	}
	f, ok := fs.fold[strings.ToLower(k)]
	return f, ok
}

var fieldCache sync.Map // reflect.Type -> fieldSet

func fieldsOf(t reflect.Type) fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(fieldSet)
	}
	fs := fieldSet{exact: map[string]field{}, fold: map[string]field{}}
	collectFields(t, nil, fs)
	fieldCache.Store(t, fs)
	return fs
}

// collectFields records t's fields before those of its embedded structs, so
// an outer field shadows an embedded one of the same name, as in Go.
func collectFields(t reflect.Type, parent []int, fs fieldSet) {
	var embedded []reflect.StructField
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			embedded = append(embedded, sf)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		f := field{index: append(append([]int(nil), parent...), i), unimplemented: sf.Tag.Get("berth") == "unimplemented"}
		addField(fs, name, f)
	}
	for _, sf := range embedded {
		collectFields(sf.Type, append(append([]int(nil), parent...), sf.Index...), fs)
	}
}

func addField(fs fieldSet, name string, f field) {
	if _, ok := fs.exact[name]; !ok {
		fs.exact[name] = f
	}
	if _, ok := fs.fold[strings.ToLower(name)]; !ok {
		fs.fold[strings.ToLower(name)] = f
	}
}
