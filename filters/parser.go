package filters

import (
	"fmt"
	"regexp"

	"github.com/containerd/errdefs"
)

// Parse returns a filter that matches an object when any of exprs matches
// it. Each expr is a comma-separated list of selectors that must all match:
//
//	expr      := selector (',' selector)*
//	selector  := fieldpath [operator value]
//	fieldpath := field ('.' field)*
//	field     := [A-Za-z0-9_]+ | "quoted"
//	operator  := '==' | '!=' | '~='
//	value     := unquoted | "quoted" | /quoted/ | |quoted|   (the last two only after ~=)
//
// Quoted strings take Go escapes. An unquoted value runs to the next ',' or
// white space. A ~= value is a Go regular expression, matched unanchored.
// No exprs, or an empty one, match everything.
//
// Errors wrap errdefs.ErrInvalidArgument and give the byte offset of the
// problem in the expression.
func Parse(exprs ...string) (Filter, error) {
	var filters anyOf
	always := len(exprs) == 0
	for _, expr := range exprs {
		if expr == "" {
			always = true
			continue
		}
		f, err := parse(expr)
		if err != nil {
			return nil, err
		}
		filters = append(filters, f)
	}
	if always {
		return Always, nil
	}
	if len(filters) == 1 {
		return filters[0], nil
	}
	return filters, nil
}

type parser struct {
	expr string
	lex  lexer
}

// parse parses one non-empty expr.
func parse(expr string) (Filter, error) {
	p := &parser{expr: expr, lex: lexer{input: expr}}
	var selectors allOf
	for {
		s, err := p.selector()
		if err != nil {
			return nil, err
		}
		selectors = append(selectors, s)
		// No white space is allowed before ',' or the end: containerd peeks
		// at the very next rune here.
		switch r, _ := p.lex.peek(); r {
		case eof:
			return selectors, nil
		case ',':
			p.lex.pos++
		case illegal:
			return nil, p.errorf(p.lex.pos, "invalid character")
		default:
			return nil, p.errorf(p.lex.pos, "unexpected %q after selector", r)
		}
	}
}

func (p *parser) selector() (*selector, error) {
	path, err := p.fieldpath()
	if err != nil {
		return nil, err
	}
	if r, _ := p.lex.peek(); r == ',' || r == eof {
		return &selector{path: path, op: opPresent}, nil
	}
	op, err := p.operator()
	if err != nil {
		return nil, err
	}
	tok, err := p.value(op)
	if err != nil {
		return nil, err
	}
	s := &selector{path: path, op: op, value: tok.value}
	if op == opMatches {
		if s.re, err = regexp.Compile(s.value); err != nil {
			return nil, p.errorf(tok.pos, "invalid regular expression: %v", err)
		}
	}
	return s, nil
}

func (p *parser) fieldpath() ([]string, error) {
	var path []string
	for {
		tok := p.lex.scan(false)
		switch {
		case tok.kind == tokField:
			path = append(path, tok.text)
		case tok.kind == tokQuoted && tok.quote == '"':
			path = append(path, tok.value)
		case tok.kind == tokQuoted:
			return nil, p.errorf(tok.pos, "field names are quoted with '\"', not %q", tok.quote)
		default:
			return nil, p.unexpected(tok, "field name")
		}
		if r, _ := p.lex.peek(); r != '.' {
			return path, nil
		}
		p.lex.pos++
	}
}

func (p *parser) operator() (operator, error) {
	tok := p.lex.scan(false)
	if tok.kind != tokOperator {
		return 0, p.unexpected(tok, "operator (==, != or ~=)")
	}
	switch tok.text {
	case "==":
		return opEqual, nil
	case "!=":
		return opNotEqual, nil
	case "~=":
		return opMatches, nil
	}
	return 0, p.errorf(tok.pos, "unknown operator %q (want ==, != or ~=)", tok.text)
}

// value returns the value token, its text decoded into token.value.
func (p *parser) value(op operator) (token, error) {
	tok := p.lex.scan(true)
	switch {
	case tok.kind == tokValue:
		tok.value = tok.text
		return tok, nil
	case tok.kind == tokQuoted && (tok.quote == '"' || op == opMatches):
		return tok, nil
	case tok.kind == tokQuoted:
		return tok, p.errorf(tok.pos, "%q quotes only ~= values; use '\"'", tok.quote)
	}
	return tok, p.unexpected(tok, "value")
}

// unexpected reports that tok is not the wanted thing.
func (p *parser) unexpected(tok token, want string) error {
	switch tok.kind {
	case tokIllegal:
		return p.errorf(tok.pos, "%s", tok.err)
	case tokEOF:
		return p.errorf(tok.pos, "expected %s", want)
	}
	return p.errorf(tok.pos, "expected %s, found %q", want, tok.text)
}

func (p *parser) errorf(pos int, format string, args ...any) error {
	return fmt.Errorf("filters: parse %q: %s at position %d: %w",
		p.expr, fmt.Sprintf(format, args...), pos, errdefs.ErrInvalidArgument)
}
