package filters

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Pseudo-runes the lexer returns instead of input.
const (
	eof     rune = -1
	illegal rune = -2 // NUL, U+FFFD or bytes that are not UTF-8
)

type tokenKind int

const (
	tokEOF       tokenKind = iota
	tokIllegal             // bad input; token.err says why
	tokField               // [A-Za-z0-9_]+
	tokValue               // an unquoted value
	tokQuoted              // a quoted string; token.value is decoded
	tokOperator            // a run of '=', '!' and '~'
	tokSeparator           // ',' or '.'
	tokOther               // one rune that starts no token
)

type token struct {
	kind  tokenKind
	pos   int    // byte offset in the input
	text  string // as written
	value string // decoded, for tokQuoted
	quote rune   // delimiter, for tokQuoted
	err   string // for tokIllegal
}

// lexer splits a filter into tokens. The parser drives it: scan skips white
// space, peek does not, and containerd's grammar depends on the difference.
type lexer struct {
	input string
	pos   int // byte offset of the next rune
}

// peek returns the next rune and its width without consuming it.
func (l *lexer) peek() (rune, int) {
	if l.pos >= len(l.input) {
		return eof, 0
	}
	r, w := utf8.DecodeRuneInString(l.input[l.pos:])
	if r == utf8.RuneError || r == 0 {
		return illegal, w
	}
	return r, w
}

// skip consumes runes while ok holds.
func (l *lexer) skip(ok func(rune) bool) {
	for {
		r, w := l.peek()
		if r < 0 || !ok(r) {
			return
		}
		l.pos += w
	}
}

// scan returns the next token after white space. In value mode, right after
// an operator, any rune that starts no other token starts an unquoted value,
// even one that could not continue it (containerd's behaviour).
func (l *lexer) scan(valueMode bool) token {
	l.skip(unicode.IsSpace)
	start := l.pos
	r, w := l.peek()
	kind := tokOther
	switch {
	case r == eof:
		return token{kind: tokEOF, pos: start}
	case r == illegal:
		return token{kind: tokIllegal, pos: start, err: "invalid character"}
	case isQuote(r):
		return l.scanQuoted(r)
	case r == ',' || r == '.':
		kind, l.pos = tokSeparator, l.pos+w
	case isOperatorRune(r):
		kind = tokOperator
		l.skip(isOperatorRune)
	case valueMode:
		kind, l.pos = tokValue, l.pos+w
		l.skip(isValueRune)
	case isFieldRune(r):
		kind = tokField
		l.skip(isFieldRune)
	default:
		l.pos += w
	}
	return token{kind: kind, pos: start, text: l.input[start:l.pos]}
}

// scanQuoted reads a literal delimited by quote, decoding Go-style escapes
// (\n, \", \x41, \101, \u00e9...); the delimiter itself is escapable.
func (l *lexer) scanQuoted(quote rune) token {
	start := l.pos
	l.pos++ // every quote rune is one byte
	var buf []byte
	for {
		r, w := l.peek()
		switch {
		case r == eof || r == '\n':
			return token{kind: tokIllegal, pos: start, err: "quoted string not terminated"}
		case r == illegal:
			return token{kind: tokIllegal, pos: l.pos, err: "invalid character"}
		case r == quote:
			l.pos += w
			return token{kind: tokQuoted, pos: start, text: l.input[start:l.pos], value: string(buf), quote: quote}
		case r == '\\':
			at := l.pos
			var err error
			if buf, err = l.scanEscape(quote, buf); err != nil {
				return token{kind: tokIllegal, pos: at, err: err.Error()}
			}
		default:
			l.pos += w
			buf = utf8.AppendRune(buf, r)
		}
	}
}

var simpleEscapes = map[rune]byte{
	'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v', '\\': '\\',
}

// scanEscape decodes the escape sequence at l.pos onto buf. Like containerd,
// and unlike strconv, it turns \u escapes of surrogates into U+FFFD.
func (l *lexer) scanEscape(quote rune, buf []byte) ([]byte, error) {
	l.pos++ // the backslash
	r, w := l.peek()
	if c, ok := simpleEscapes[r]; ok || r == quote {
		if !ok {
			c = byte(quote)
		}
		l.pos += w
		return append(buf, c), nil
	}
	switch r {
	case '0', '1', '2', '3', '4', '5', '6', '7':
		v, ok := l.digits(3, 8)
		if !ok || v > 0xff {
			return buf, fmt.Errorf(`invalid octal escape`)
		}
		return append(buf, byte(v)), nil
	case 'x', 'u', 'U':
		l.pos++
		v, ok := l.digits(map[rune]int{'x': 2, 'u': 4, 'U': 8}[r], 16)
		switch {
		case !ok || v > utf8.MaxRune:
			return buf, fmt.Errorf(`invalid \%c escape`, r)
		case r == 'x':
			return append(buf, byte(v)), nil
		}
		return utf8.AppendRune(buf, rune(v)), nil
	}
	return buf, fmt.Errorf("unknown escape sequence")
}

// digits consumes exactly n digits in base and returns their value.
func (l *lexer) digits(n int, base uint32) (uint32, bool) {
	if len(l.input)-l.pos < n {
		return 0, false
	}
	var v uint32
	for _, c := range []byte(l.input[l.pos : l.pos+n]) {
		d := digitValue(c)
		if d >= base {
			return 0, false
		}
		v = v*base + d
	}
	l.pos += n
	return v, true
}

func digitValue(c byte) uint32 {
	switch {
	case '0' <= c && c <= '9':
		return uint32(c - '0')
	case 'a' <= c && c <= 'f':
		return uint32(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return uint32(c - 'A' + 10)
	}
	return 16
}

func isQuote(r rune) bool { return r == '"' || r == '/' || r == '|' }

func isOperatorRune(r rune) bool { return r == '=' || r == '!' || r == '~' }

func isFieldRune(r rune) bool {
	return r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

// isValueRune reports whether r may continue an unquoted value: any visible
// rune but ','.
func isValueRune(r rune) bool {
	return r != ',' && !unicode.IsSpace(r) && unicode.IsGraphic(r)
}
