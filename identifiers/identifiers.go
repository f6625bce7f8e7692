// Package identifiers validates the names of namespaces, containers, leases
// and snapshot keys against containerd's identifier rules, so that an object
// berth accepts is one containerd would accept too.
package identifiers

import (
	"fmt"
	"regexp"

	"github.com/containerd/errdefs"
)

// MaxLength is the longest identifier accepted.
const MaxLength = 76

var identifierRe = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// Validate returns an InvalidArgument error naming the broken rule when s is
// not a valid identifier: 1 to 76 characters, letters and digits separated by
// single '.', '_' or '-', starting and ending with a letter or digit.
func Validate(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("identifier must not be empty: %w", errdefs.ErrInvalidArgument)
	case len(s) > MaxLength:
		return fmt.Errorf("identifier %q is %d characters, longer than the maximum of %d: %w", s, len(s), MaxLength, errdefs.ErrInvalidArgument)
	case !identifierRe.MatchString(s):
		return fmt.Errorf("identifier %q must match %v (letters and digits, separated by single '.', '_' or '-'): %w", s, identifierRe, errdefs.ErrInvalidArgument)
	}
	return nil
}
