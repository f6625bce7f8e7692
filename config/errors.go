package config

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/errdefs"
)

// msgIgnored is the message of every warning about a key berth reads past.
const msgIgnored = "not implemented by berth, ignored"

// Warning reports a key that berth accepted but does not act on. Warnings
// never stop the daemon; they are meant to be logged once at start-up.
type Warning struct {
	File string // file the key was read from
	Line int    // 1-based line of the key, 0 when unknown
	Key  string // dotted TOML key, e.g. grpc.tcp_address
	Msg  string
}

// String renders the warning as
// `config /etc/berth/config.toml:7: key "oom_score": not implemented by berth, ignored`.
func (w Warning) String() string {
	return render(w.File, w.Line, 0, w.Key, w.Msg)
}

// Error is a configuration problem with the place it was found. It wraps
// errdefs.ErrInvalidArgument, so errdefs.IsInvalidArgument reports true.
type Error struct {
	File   string
	Line   int // 1-based, 0 when unknown
	Column int // 1-based byte column, 0 when unknown
	Key    string
	Msg    string
}

// Error renders the problem as
// `config /etc/berth/config.toml:12:3: key "grpc.address": expected string, got integer`.
func (e *Error) Error() string {
	return render(e.File, e.Line, e.Column, e.Key, e.Msg)
}

// Unwrap lets errors.Is match errdefs.ErrInvalidArgument.
func (e *Error) Unwrap() error { return errdefs.ErrInvalidArgument }

func render(file string, line, col int, key, msg string) string {
	var b strings.Builder
	b.WriteString("config")
	if file != "" {
		b.WriteString(" ")
		b.WriteString(file)
	}
	if line > 0 {
		b.WriteString(":" + strconv.Itoa(line))
		if col > 0 {
			b.WriteString(":" + strconv.Itoa(col))
		}
	}
	b.WriteString(": ")
	if key != "" {
		b.WriteString(`key "` + key + `": `)
	}
	b.WriteString(msg)
	return b.String()
}

// errorAt builds an *Error located at it.
func errorAt(it *item, key, msg string) *Error {
	return &Error{File: it.pos.File, Line: it.pos.Line, Column: it.pos.Col, Key: key, Msg: msg}
}

// warnAt builds a Warning located at it.
func warnAt(it *item, key string) Warning {
	return Warning{File: it.pos.File, Line: it.pos.Line, Key: key, Msg: msgIgnored}
}

// joinKey appends one key part to a dotted key, quoting it the way a user
// would have to write it in TOML. Single quotes are preferred so the result
// reads well inside the double quotes of a message.
func joinKey(prefix, part string) string {
	if prefix == "" {
		return quoteKey(part)
	}
	return prefix + "." + quoteKey(part)
}

// indexKey names element i of the array at key.
func indexKey(key string, i int) string {
	return key + "[" + strconv.Itoa(i) + "]"
}

func quoteKey(part string) string {
	if isBareKey(part) {
		return part
	}
	printable := strings.IndexFunc(part, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
	if printable && utf8.ValidString(part) && !strings.ContainsRune(part, '\'') {
		return "'" + part + "'"
	}
	return strconv.Quote(part)
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-'
		if !ok {
			return false
		}
	}
	return true
}
