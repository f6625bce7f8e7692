package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

const (
	// defaultTokenLifetime is the spec's lifetime of a token whose
	// response has no expires_in.
	defaultTokenLifetime = 60 * time.Second
	// maxTokenResponse bounds what is read from a token server.
	maxTokenResponse = 1 << 20
	// clientID names berth to OAuth2 token endpoints.
	clientID = "berth"
)

// tokenResponse is a token server's answer: distribution's token spec
// (token) or OAuth2 (access_token).
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// fetchToken gets a token for scopes from c's realm.
func (a *Authorizer) fetchToken(ctx context.Context, client *http.Client, host string, c Challenge, scopes []string) (string, time.Time, error) {
	user, secret, err := a.credentials(host)
	if err != nil {
		return "", time.Time{}, err
	}
	realm, err := url.Parse(c.Params["realm"])
	if err != nil || (realm.Scheme != "https" && realm.Scheme != "http") || realm.Host == "" {
		return "", time.Time{}, fmt.Errorf("%s: token realm %q is not an http(s) URL: %w", host, c.Params["realm"], errdefs.ErrUnauthenticated)
	}
	var req *http.Request
	if user == "" && secret != "" {
		req, err = refreshTokenRequest(ctx, realm, c.Params["service"], scopes, secret)
	} else {
		req, err = getTokenRequest(ctx, realm, c.Params["service"], scopes, user, secret)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	if a.userAgent != "" {
		req.Header.Set("User-Agent", a.userAgent)
	}
	if client == nil {
		client = http.DefaultClient
	}
	start := a.now()
	resp, err := client.Do(req)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("fetch token from %s: %w", realm.Redacted(), err)
	}
	defer resp.Body.Close()
	tr, err := decodeToken(resp)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("fetch token from %s for %s: %w", realm.Redacted(), strings.Join(scopes, " "), err)
	}
	lifetime := time.Duration(tr.ExpiresIn) * time.Second
	if lifetime <= 0 {
		lifetime = defaultTokenLifetime
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	// Renew a little early, so a token does not expire in flight.
	return tok, start.Add(lifetime * 9 / 10), nil
}

// getTokenRequest is distribution's token request, with basic credentials
// when there are any.
func getTokenRequest(ctx context.Context, realm *url.URL, service string, scopes []string, user, secret string) (*http.Request, error) {
	u := *realm
	q := u.Query()
	if service != "" {
		q.Set("service", service)
	}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	if user != "" {
		q.Set("account", user)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("token request: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if secret != "" {
		req.SetBasicAuth(user, secret)
	}
	return req, nil
}

// refreshTokenRequest exchanges an identity (refresh) token, OAuth2 style.
func refreshTokenRequest(ctx context.Context, realm *url.URL, service string, scopes []string, refresh string) (*http.Request, error) {
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refresh},
		"client_id":     {clientID},
		"service":       {service},
		"scope":         {strings.Join(scopes, " ")},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, realm.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("token request: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

// decodeToken reads a token response, mapping failures to error classes.
func decodeToken(resp *http.Response) (tokenResponse, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
	if err != nil {
		return tokenResponse{}, fmt.Errorf("read response: %v: %w", err, errdefs.ErrUnavailable)
	}
	if resp.StatusCode != http.StatusOK {
		return tokenResponse{}, fmt.Errorf("%s%s: %w", resp.Status, bodySnippet(body), statusClass(resp.StatusCode))
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return tokenResponse{}, fmt.Errorf("response is not a token: %v: %w", err, errdefs.ErrUnauthenticated)
	}
	if tr.Token == "" && tr.AccessToken == "" {
		return tokenResponse{}, fmt.Errorf("response holds no token: %w", errdefs.ErrUnauthenticated)
	}
	return tr, nil
}

// statusClass maps a token server's status to an error class.
func statusClass(status int) error {
	switch {
	case status == http.StatusUnauthorized:
		return errdefs.ErrUnauthenticated
	case status == http.StatusForbidden:
		return errdefs.ErrPermissionDenied
	case status == http.StatusTooManyRequests || status >= 500:
		return errdefs.ErrUnavailable
	}
	return errdefs.ErrUnauthenticated
}

// bodySnippet quotes the start of an error body on one line.
func bodySnippet(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return ": " + s
}
