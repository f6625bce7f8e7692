// Package filters parses and evaluates containerd's filter syntax, used by
// List calls and event subscriptions:
//
//	topic=="/namespaces/create",namespace==default
//	labels."com.example/key"~=^v[0-9]+$
//	name!=busybox
//
// A filter is a comma-separated conjunction of selectors; several filters
// passed together are a disjunction. A selector is a field path (dotted,
// each part plain or double-quoted), optionally an operator (==, !=, ~=) and a
// value (plain or quoted); a bare field path tests that the field is present.
//
// The accepted syntax is containerd's, quirks included, so that a filter a
// containerd client sends means the same thing here:
//
//   - '/' and '|' are quote characters, like '"'. They may delimit a ~=
//     regular expression (name~=/^a|b$/) but nothing else, so a value that
//     starts with '/' must be double-quoted: topic=="/tasks/exit".
//   - White space may appear before a field, an operator or a value, but
//     not before ',' or the end of the filter, nor before a '.' in a field
//     path.
//   - "" alone is the filter that matches everything; " " is an error.
package filters

// Adaptor exposes an object's fields to a filter. Field returns the value at
// fieldpath and whether it is present.
type Adaptor interface {
	Field(fieldpath []string) (value string, present bool)
}

// AdaptorFunc lets a function be an Adaptor.
type AdaptorFunc func(fieldpath []string) (string, bool)

// Field implements Adaptor.
func (fn AdaptorFunc) Field(fieldpath []string) (string, bool) { return fn(fieldpath) }

// Filter matches objects.
type Filter interface {
	Match(a Adaptor) bool
}

// FilterFunc lets a function be a Filter.
type FilterFunc func(Adaptor) bool

// Match implements Filter.
func (fn FilterFunc) Match(a Adaptor) bool { return fn(a) }

// Always matches everything.
var Always Filter = FilterFunc(func(Adaptor) bool { return true })
