package local

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// parseFilters returns a matcher of refs that accepts a ref matching any
// of filters, or every ref when there are none.
func parseFilters(filters []string) (func(ref string) bool, error) {
	if len(filters) == 0 {
		return func(string) bool { return true }, nil
	}
	matchers := make([]func(string) bool, 0, len(filters))
	for _, f := range filters {
		m, err := parseFilter(f)
		if err != nil {
			return nil, err
		}
		matchers = append(matchers, m)
	}
	return func(ref string) bool {
		for _, m := range matchers {
			if m(ref) {
				return true
			}
		}
		return false
	}, nil
}

func parseFilter(f string) (func(ref string) bool, error) {
	f = strings.TrimSpace(f)
	if f == "" {
		return func(string) bool { return true }, nil
	}
	if v, ok := strings.CutPrefix(f, "ref=="); ok {
		want, err := unquote(v)
		if err != nil {
			return nil, filterError(f, err)
		}
		return func(ref string) bool { return ref == want }, nil
	}
	if v, ok := strings.CutPrefix(f, "ref~="); ok {
		expr, err := unquote(v)
		if err != nil {
			return nil, filterError(f, err)
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			return nil, filterError(f, err)
		}
		return re.MatchString, nil
	}
	return nil, filterError(f, errors.New(`local store supports only "ref==VALUE" and "ref~=REGEXP"`))
}

func unquote(v string) (string, error) {
	v = strings.TrimSpace(v)
	if strings.HasPrefix(v, `"`) {
		return strconv.Unquote(v)
	}
	return v, nil
}

func filterError(f string, err error) error {
	return fmt.Errorf("ingest filter %q: %v: %w", f, err, errdefs.ErrInvalidArgument)
}
