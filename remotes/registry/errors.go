package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/remotes/hosts"
)

// maxErrorBody bounds what is read of an error response.
const maxErrorBody = 64 << 10

// Error is a registry's error answer, mapped to an errdefs class. Its
// message is the registry's own ("manifest unknown", "unauthorized:
// authentication required") followed by the class when the message does
// not say it already.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Errors are the entries of the distribution error body, if any.
	Errors []ErrorEntry
	// Message is what the registry said, or the HTTP status.
	Message string
	class   error
}

// ErrorEntry is one entry of a distribution error body:
// {"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}.
type ErrorEntry struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

func (e *Error) Error() string {
	if c := e.class.Error(); !strings.Contains(strings.ToLower(e.Message), c) {
		return e.Message + ": " + c
	}
	return e.Message
}

// Unwrap returns the errdefs class.
func (e *Error) Unwrap() error { return e.class }

// responseError reads an error response. what ("manifest", "blob")
// names the object for a 404 without a body, as HEAD answers are.
func responseError(resp *http.Response, what string) *Error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := &Error{StatusCode: resp.StatusCode}
	var doc struct {
		Errors []ErrorEntry `json:"errors"`
	}
	if json.Unmarshal(body, &doc) == nil && len(doc.Errors) > 0 {
		e.Errors = doc.Errors
	}
	var msgs []string
	for _, entry := range e.Errors {
		msgs = append(msgs, entryMessage(entry))
	}
	switch {
	case len(msgs) > 0:
		e.Message = strings.Join(msgs, "; ")
	case resp.StatusCode == http.StatusNotFound && what != "":
		e.Message = what + " unknown"
	default:
		e.Message = resp.Status
	}
	e.class = statusClass(resp.StatusCode)
	if len(e.Errors) > 0 {
		if c := codeClass(e.Errors[0].Code); c != nil {
			e.class = c
		}
	}
	return e
}

// entryMessage renders an entry as docker does, "code: message", without
// repeating a message that only restates the code.
func entryMessage(e ErrorEntry) string {
	code := strings.ToLower(strings.ReplaceAll(e.Code, "_", " "))
	switch {
	case e.Message == "":
		return code
	case code == "" || strings.EqualFold(e.Message, code):
		return e.Message
	}
	return code + ": " + e.Message
}

// codeClass maps distribution error codes to classes; nil when unknown.
func codeClass(code string) error {
	switch code {
	case "UNAUTHORIZED":
		return errdefs.ErrUnauthenticated
	case "DENIED":
		return errdefs.ErrPermissionDenied
	case "TOOMANYREQUESTS":
		return errdefs.ErrUnavailable
	case "UNSUPPORTED":
		return errdefs.ErrNotImplemented
	case "MANIFEST_UNVERIFIED":
		return errdefs.ErrInvalidArgument
	}
	switch {
	case strings.HasSuffix(code, "_UNKNOWN"):
		return errdefs.ErrNotFound
	case strings.HasSuffix(code, "_INVALID"):
		return errdefs.ErrInvalidArgument
	}
	return nil
}

// statusClass maps an HTTP status to a class.
func statusClass(status int) error {
	switch {
	case status == http.StatusBadRequest, status == http.StatusRequestedRangeNotSatisfiable:
		return errdefs.ErrInvalidArgument
	case status == http.StatusUnauthorized:
		return errdefs.ErrUnauthenticated
	case status == http.StatusForbidden:
		return errdefs.ErrPermissionDenied
	case status == http.StatusNotFound:
		return errdefs.ErrNotFound
	case status == http.StatusMethodNotAllowed:
		return errdefs.ErrNotImplemented
	case status == http.StatusConflict:
		return errdefs.ErrConflict
	case status == http.StatusTooManyRequests, status >= 500:
		return errdefs.ErrUnavailable
	}
	return errdefs.ErrUnknown
}

// transportError is a request that got no answer: the host is unreachable
// or the connection broke. Its class is Unavailable.
type transportError struct{ err error }

// Error says what failed without repeating the URL (the caller names the
// host): "connect: connection refused" rather than
// `Get "http://...": dial tcp 127.0.0.1:9: connect: connection refused`.
func (e transportError) Error() string {
	err := e.err
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

func (e transportError) Unwrap() []error { return []error{e.err, errdefs.ErrUnavailable} }

// finalError stops the fall-through: no other host would do better.
type finalError struct{ err error }

func (e finalError) Error() string { return e.err.Error() }
func (e finalError) Unwrap() error { return e.err }

// HostsError is an operation that failed on every host it tried.
type HostsError struct {
	// Op is "resolve", "pull" or "push"; Ref the reference.
	Op, Ref string
	// Attempts lists each host tried and why it failed, in order.
	Attempts []Attempt
}

// Attempt is one host's failure.
type Attempt struct {
	// URL is the host's API root, Mirror whether it came from a [host]
	// section.
	URL    string
	Mirror bool
	Err    error
}

func (e *HostsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: tried %d host", e.Op, e.Ref, len(e.Attempts))
	if len(e.Attempts) != 1 {
		b.WriteString("s")
	}
	for i, a := range e.Attempts {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		b.WriteString(sep + a.URL)
		if a.Mirror {
			b.WriteString(" (mirror)")
		}
		b.WriteString(": " + a.Err.Error())
	}
	return b.String()
}

// Unwrap returns the most telling failure: an answer other than "not
// found" (authentication, a refused manifest) beats "not found", which
// beats an unreachable host; among equals the last host, the registry
// itself rather than a mirror.
func (e *HostsError) Unwrap() error {
	var best error
	bestRank := -1
	for _, a := range e.Attempts {
		if r := rank(a.Err); r >= bestRank {
			best, bestRank = a.Err, r
		}
	}
	return best
}

func rank(err error) int {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return 0
	case errors.Is(err, errdefs.ErrUnavailable):
		return 1
	case errors.Is(err, errdefs.ErrNotFound):
		return 2
	}
	return 3
}

// attemptURL names h in errors: its API root, with the scheme the
// transport actually uses.
func attemptURL(h hosts.Host, plainHTTP bool) string {
	if plainHTTP {
		h.Scheme = "http"
	}
	return h.URL()
}
