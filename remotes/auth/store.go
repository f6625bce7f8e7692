package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/errdefs"
)

// DefaultStorePath is where `berth login` keeps credentials:
// $BERTH_CONFIG_DIR/auth.json, else /etc/berth/auth.json.
func DefaultStorePath() string {
	if d := os.Getenv("BERTH_CONFIG_DIR"); d != "" {
		return filepath.Join(d, "auth.json")
	}
	return "/etc/berth/auth.json"
}

// Store is berth's own credentials file, written by `berth login`. Its
// format is docker's config.json ("auths" → host → "auth": base64
// "user:password", or "identitytoken"), so either file can be copied
// into the other; keys other than "auths" are kept as they are. The file
// is created 0600 and replaced atomically (write, fsync, rename) under an
// flock of "<file>.lock", so concurrent logins do not lose entries.
type Store struct {
	path string
}

// NewStore returns the store at path; "" means DefaultStorePath().
func NewStore(path string) *Store {
	if path == "" {
		path = DefaultStorePath()
	}
	return &Store{path: path}
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Lookup returns the credentials stored for host; it has the signature of
// Credentials. No file or no entry is "", "", nil.
func (s *Store) Lookup(host string) (user, secret string, err error) {
	_, auths, err := s.read()
	if err != nil {
		return "", "", err
	}
	e, ok := lookup(auths, host)
	if !ok {
		return "", "", nil
	}
	user, secret, err = e.credentials()
	if err != nil {
		return "", "", fmt.Errorf("credentials file %s: entry %q: %w", s.path, host, err)
	}
	return user, secret, nil
}

// Store saves credentials for host, replacing any entry under one of its
// names. An empty user stores secret as an identity token.
func (s *Store) Store(host, user, secret string) error {
	if NormalizeHost(host) == "" || secret == "" {
		return fmt.Errorf("store credentials for %q: host and secret are required: %w", host, errdefs.ErrInvalidArgument)
	}
	e := authEntry{IdentityToken: secret}
	if user != "" {
		e = authEntry{Auth: base64.StdEncoding.EncodeToString([]byte(user + ":" + secret))}
	}
	return s.update(func(auths map[string]authEntry) error {
		remove(auths, host)
		auths[NormalizeHost(host)] = e
		return nil
	})
}

// Erase removes the credentials of host; NotFound when there are none.
func (s *Store) Erase(host string) error {
	return s.update(func(auths map[string]authEntry) error {
		if !remove(auths, host) {
			return fmt.Errorf("credentials for %q in %s: %w", host, s.path, errdefs.ErrNotFound)
		}
		return nil
	})
}

// remove deletes every entry naming host; it reports whether one did.
func remove(auths map[string]authEntry, host string) bool {
	want, found := NormalizeHost(host), false
	for k := range auths {
		if NormalizeHost(k) == want {
			delete(auths, k)
			found = true
		}
	}
	return found
}

// read loads the file: the whole document and its auths.
func (s *Store) read() (map[string]json.RawMessage, map[string]authEntry, error) {
	doc := map[string]json.RawMessage{}
	auths := map[string]authEntry{}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return doc, auths, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("credentials file: %w", err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, nil, fmt.Errorf("credentials file %s: %v: %w", s.path, err, errdefs.ErrInvalidArgument)
	}
	if raw, ok := doc["auths"]; ok {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return nil, nil, fmt.Errorf("credentials file %s: auths: %v: %w", s.path, err, errdefs.ErrInvalidArgument)
		}
	}
	return doc, auths, nil
}

// update applies change to the auths under the file lock and writes the
// file back atomically.
func (s *Store) update(change func(map[string]authEntry) error) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("credentials directory: %w", err)
	}
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	doc, auths, err := s.read()
	if err != nil {
		return err
	}
	if err := change(auths); err != nil {
		return err
	}
	raw, err := json.Marshal(auths) // keys come out sorted
	if err != nil {
		return err
	}
	doc["auths"] = raw
	out, err := json.MarshalIndent(doc, "", "\t")
	if err != nil {
		return err
	}
	return writeAtomic(s.path, append(out, '\n'))
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("credentials lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("credentials lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// writeAtomic replaces path with data, mode 0600: a reader sees the old
// file or the new one, never a part.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".auth-*.json")
	if err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("credentials file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("credentials file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("credentials file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("credentials file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
