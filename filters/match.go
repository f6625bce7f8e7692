package filters

import "regexp"

type operator int

const (
	opPresent  operator = iota // bare field path
	opEqual                    // ==
	opNotEqual                 // !=
	opMatches                  // ~=
)

// selector is one <fieldpath>[<operator><value>] term.
type selector struct {
	path  []string
	op    operator
	value string
	re    *regexp.Regexp // compiled value, for opMatches
}

// Match follows containerd: != and ~= compare an absent field as the empty
// string, so name!=foo matches objects without a name and name~=^$ matches
// them too, while == requires the field to be present.
func (s *selector) Match(a Adaptor) bool {
	value, present := a.Field(s.path)
	switch s.op {
	case opPresent:
		return present
	case opEqual:
		return present && value == s.value
	case opNotEqual:
		return value != s.value
	case opMatches:
		return s.re.MatchString(value)
	}
	return false
}

// allOf matches when every filter matches: the selectors of one filter.
type allOf []Filter

func (fs allOf) Match(a Adaptor) bool {
	for _, f := range fs {
		if !f.Match(a) {
			return false
		}
	}
	return true
}

// anyOf matches when some filter matches: several filters passed together.
type anyOf []Filter

func (fs anyOf) Match(a Adaptor) bool {
	for _, f := range fs {
		if f.Match(a) {
			return true
		}
	}
	return false
}
