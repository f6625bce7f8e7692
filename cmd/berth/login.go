package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/berth-dev/berth/remotes/auth"
	"github.com/containerd/errdefs"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// maxPasswordSize bounds what --password-stdin reads: tokens are long, but
// not that long.
const maxPasswordSize = 64 << 10

type loginOptions struct {
	username      string
	password      string
	passwordStdin bool
}

type loginView struct {
	Registry string `json:"registry"`
	Username string `json:"username,omitempty"`
	File     string `json:"file"`
}

func newLoginCommand(a *app) *cobra.Command {
	var o loginOptions
	cmd := &cobra.Command{
		Use:   "login [--username USER] [--password-stdin] REGISTRY",
		Short: "Store credentials for a registry in berth's credentials file",
		Long: `Store a user name and password (or token) for REGISTRY in berth's credentials
file, $BERTH_CONFIG_DIR/auth.json or else /etc/berth/auth.json, mode 0600, where
berthd looks for them when it pulls. The file has the format of docker's
config.json.

The password comes from standard input with --password-stdin, or from a prompt
when standard input is a terminal. --password works too, but leaves the secret
in the shell history and the process list.

The credentials are stored as given: berth does not try them against the
registry, so a wrong password shows on the next pull.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host := auth.NormalizeHost(args[0])
			if host == "" {
				return fmt.Errorf("invalid registry %q: %w", args[0], errdefs.ErrInvalidArgument)
			}
			store := auth.NewStore("")
			user, secret, err := a.loginSecret(cmd.Context(), host, store, o)
			if err != nil {
				return err
			}
			if err := store.Store(host, user, secret); err != nil {
				return err
			}
			v := loginView{Registry: host, Username: user, File: store.Path()}
			return a.out().print(v, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "Stored credentials for %s in %s (not verified with the registry)\n", host, v.File)
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.username, "username", "u", "", "user name")
	f.StringVarP(&o.password, "password", "p", "", "password or token (insecure: prefer --password-stdin)")
	f.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password or token from standard input")
	return cmd
}

// loginSecret gathers the user name and secret from the flags, standard
// input or prompts.
func (a *app) loginSecret(ctx context.Context, host string, store *auth.Store, o loginOptions) (string, string, error) {
	switch {
	case o.password != "" && o.passwordStdin:
		return "", "", errors.New("--password and --password-stdin exclude each other")
	case o.password != "":
		fmt.Fprintln(a.stderr, "berth: warning: --password is visible to other users and kept in shell history; use --password-stdin")
		if o.username == "" {
			return "", "", errors.New("--password needs --username")
		}
		return o.username, o.password, nil
	case o.passwordStdin:
		if o.username == "" {
			return "", "", errors.New("--password-stdin needs --username")
		}
		secret, err := readSecret(a.stdin)
		return o.username, secret, err
	}
	tty, ok := a.stdin.(*os.File)
	if !ok || !isTerminal(tty) {
		return "", "", errors.New("no password: pass it with --password-stdin, or run on a terminal to be prompted")
	}
	user := o.username
	if user == "" {
		stored, _, _ := store.Lookup(host)
		var err error
		if user, err = prompt(ctx, a.stderr, tty, "Username", stored, true); err != nil {
			return "", "", err
		}
	}
	if user == "" {
		return "", "", errors.New("no user name given")
	}
	secret, err := prompt(ctx, a.stderr, tty, "Password", "", false)
	if err == nil && secret == "" {
		err = errors.New("no password given")
	}
	return user, secret, err
}

// readSecret reads the secret from r, dropping the line end a shell's echo
// or a file adds.
func readSecret(r io.Reader) (string, error) {
	if r == nil {
		return "", errors.New("--password-stdin: no standard input")
	}
	b, err := io.ReadAll(io.LimitReader(r, maxPasswordSize+1))
	if err != nil {
		return "", fmt.Errorf("--password-stdin: %w", err)
	}
	if len(b) > maxPasswordSize {
		return "", fmt.Errorf("--password-stdin: over %d bytes", maxPasswordSize)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", errors.New("--password-stdin: standard input is empty")
	}
	return s, nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// prompt asks for one line on the terminal, with echo off unless echo; an
// empty answer is def. The module has golang.org/x/sys but not x/term, so
// echo is switched through termios directly, as x/term does. Since berth
// catches SIGINT in its context, the read gives way to ctx.
func prompt(ctx context.Context, w io.Writer, tty *os.File, label, def string, echo bool) (string, error) {
	if def != "" {
		fmt.Fprintf(w, "%s (%s): ", label, def)
	} else {
		fmt.Fprintf(w, "%s: ", label)
	}
	if !echo {
		restore, err := echoOff(tty)
		if err != nil {
			return "", err
		}
		defer func() { restore(); fmt.Fprintln(w) }()
	}
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := readLine(tty)
		done <- result{line, err}
	}()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case r := <-done:
		if r.err != nil {
			return "", fmt.Errorf("read %s: %w", strings.ToLower(label), r.err)
		}
		if r.line == "" {
			return def, nil
		}
		return r.line, nil
	}
}

func echoOff(tty *os.File) (func(), error) {
	fd := int(tty.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// readLine reads up to a newline a byte at a time, so that nothing after
// the line is consumed.
func readLine(r io.Reader) (string, error) {
	var line []byte
	buf := make([]byte, 1)
	for {
		n, err := r.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return strings.TrimSuffix(string(line), "\r"), nil
			}
			line = append(line, buf[0])
		}
		if errors.Is(err, io.EOF) {
			return strings.TrimSuffix(string(line), "\r"), nil
		}
		if err != nil {
			return "", err
		}
	}
}

func newLogoutCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "logout REGISTRY",
		Short: "Remove a registry's credentials from berth's credentials file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host := auth.NormalizeHost(args[0])
			store := auth.NewStore("")
			err := store.Erase(host)
			removed := err == nil
			if err != nil && !errdefs.IsNotFound(err) {
				return err
			}
			v := struct {
				Registry string `json:"registry"`
				Removed  bool   `json:"removed"`
			}{host, removed}
			return a.out().print(v, func(w io.Writer) error {
				if !removed {
					_, err := fmt.Fprintf(w, "Not logged in to %s\n", host)
					return err
				}
				_, err := fmt.Fprintf(w, "Removed credentials for %s from %s\n", host, store.Path())
				return err
			})
		},
	}
}
