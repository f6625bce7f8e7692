package auth

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseWWWAuthenticate(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want []Challenge
	}{
		{
			[]string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"`},
			[]Challenge{{"bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/busybox:pull"}}},
		},
		{
			[]string{`Basic realm="Registry Realm"`},
			[]Challenge{{"basic", map[string]string{"realm": "Registry Realm"}}},
		},
		{
			[]string{`Basic realm="a, b", Bearer realm="https://t/token" , error = "invalid_token"`},
			[]Challenge{
				{"basic", map[string]string{"realm": "a, b"}},
				{"bearer", map[string]string{"realm": "https://t/token", "error": "invalid_token"}},
			},
		},
		{
			[]string{`Negotiate abc==, BEARER Realm=token-realm,Service=svc`},
			[]Challenge{
				{"negotiate", map[string]string{}},
				{"bearer", map[string]string{"realm": "token-realm", "service": "svc"}},
			},
		},
		{
			[]string{`Bearer realm="esc\"aped\\"`, `Basic`},
			[]Challenge{
				{"bearer", map[string]string{"realm": `esc"aped\`}},
				{"basic", map[string]string{}},
			},
		},
		{[]string{`Bearer realm="unterminated`}, []Challenge{{"bearer", map[string]string{"realm": "unterminated"}}}},
		{[]string{"", " , ,", "\x00\x01"}, nil},
	} {
		got := ParseWWWAuthenticate(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

// FuzzParseWWWAuthenticate checks that no header value panics the parser
// and that every challenge it finds has a token for a scheme.
func FuzzParseWWWAuthenticate(f *testing.F) {
	for _, seed := range []string{
		`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull"`,
		`Basic realm="x", Bearer realm=y`,
		`Negotiate abc==`,
		`Bearer realm="\`,
		`,,= =,"`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, c := range ParseWWWAuthenticate([]string{v}) {
			if c.Scheme == "" || strings.ToLower(c.Scheme) != c.Scheme {
				t.Fatalf("bad scheme %q from %q", c.Scheme, v)
			}
			for _, ch := range []byte(c.Scheme) {
				if !isTokenChar(ch) {
					t.Fatalf("scheme %q has a non-token byte, from %q", c.Scheme, v)
				}
			}
			if c.Params == nil {
				t.Fatalf("nil params from %q", v)
			}
		}
	})
}
