package auth

import (
	"strings"
)

// Challenge is one challenge of a WWW-Authenticate header.
type Challenge struct {
	// Scheme is lower case: "bearer", "basic".
	Scheme string
	// Params holds the auth-params with lower-case names: realm,
	// service, scope, error...
	Params map[string]string
}

// ParseWWWAuthenticate parses the values of WWW-Authenticate headers
// (RFC 9110 section 11.6.1): each value holds one or more challenges,
// `Bearer realm="https://auth.example.com/token",service="registry",
// scope="repository:app:pull"`. What does not parse is skipped: the
// header comes from the network, and a registry that sends garbage is
// answered with the 401 it already gave.
func ParseWWWAuthenticate(values []string) []Challenge {
	var out []Challenge
	for _, v := range values {
		s := scanner{s: v}
		for {
			s.skip(" \t,")
			if s.done() {
				break
			}
			scheme := s.token()
			if scheme == "" {
				s.pos++ // not a token character: skip it
				continue
			}
			c := Challenge{Scheme: strings.ToLower(scheme), Params: map[string]string{}}
			s.params(c.Params)
			out = append(out, c)
		}
	}
	return out
}

// scanner walks one header value.
type scanner struct {
	s   string
	pos int
}

func (s *scanner) done() bool { return s.pos >= len(s.s) }

func (s *scanner) peek() byte {
	if s.done() {
		return 0
	}
	return s.s[s.pos]
}

func (s *scanner) skip(chars string) {
	for !s.done() && strings.IndexByte(chars, s.s[s.pos]) >= 0 {
		s.pos++
	}
}

// isTokenChar reports the tchar of RFC 9110 section 5.6.2.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (s *scanner) token() string {
	start := s.pos
	for !s.done() && isTokenChar(s.s[s.pos]) {
		s.pos++
	}
	return s.s[start:s.pos]
}

// params reads the name=value pairs of one challenge. Right after the
// scheme a token without "=" is a token68 credential ("Negotiate abc=="),
// after a comma it is the scheme of the next challenge.
func (s *scanner) params(into map[string]string) {
	for first := true; ; first = false {
		s.skip(" \t")
		start := s.pos
		name := s.token()
		s.skip(" \t")
		if name == "" || s.peek() != '=' || s.isToken68End() {
			s.pos = start
			if first {
				s.skipToken68()
			}
			return
		}
		s.pos++ // '='
		s.skip(" \t")
		into[strings.ToLower(name)] = s.value()
		s.skip(" \t")
		if s.peek() != ',' {
			s.pos = len(s.s) // junk after a value: nothing more to trust
			return
		}
		s.pos++
	}
}

// isToken68End reports whether the '=' at pos is token68 padding: more
// '=' then the end or a comma.
func (s *scanner) isToken68End() bool {
	i := s.pos
	for i < len(s.s) && s.s[i] == '=' {
		i++
	}
	return i-s.pos > 1 || i == len(s.s) || s.s[i] == ','
}

// skipToken68 steps over a token68 credential and its padding.
func (s *scanner) skipToken68() {
	for !s.done() && (isTokenChar(s.s[s.pos]) || s.s[s.pos] == '/' || s.s[s.pos] == '=') {
		s.pos++
	}
}

// value reads a token or a quoted-string.
func (s *scanner) value() string {
	if s.peek() != '"' {
		return s.token()
	}
	s.pos++
	var b strings.Builder
	for !s.done() {
		c := s.s[s.pos]
		s.pos++
		switch {
		case c == '"':
			return b.String()
		case c == '\\' && !s.done():
			b.WriteByte(s.s[s.pos])
			s.pos++
		default:
			b.WriteByte(c)
		}
	}
	return b.String() // unterminated: take what there is
}
