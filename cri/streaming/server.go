// Package streaming serves the CRI's streaming calls (Exec, Attach,
// PortForward) over HTTP, as the kubelet's streaming server does for
// other runtimes: the gRPC call stores the request under a random,
// single-use token that expires after a minute and answers a URL
// http://ADDR/{exec,attach,portforward}/<token>; the client (the kubelet,
// crictl, critest) then connects there and speaks the Kubernetes
// remotecommand or portforward protocol, over SPDY/3.1 or websocket.
//
// The package knows the protocols only; what runs is the Runtime's
// (package cri's) business.
package streaming

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TokenTTL is how long a URL stays usable, as the kubelet's.
const TokenTTL = time.Minute

// TermSize is a terminal's size in characters.
type TermSize struct {
	Width  uint16
	Height uint16
}

// Streams are the client's ends of a process's stdio. A nil member was
// not requested.
type Streams struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	TTY    bool
	// Resize delivers terminal sizes while TTY; it is closed when the
	// client is gone.
	Resize <-chan TermSize
}

// ExitError is the error of a process that exited with a non-zero code.
type ExitError struct{ Code int }

func (e *ExitError) Error() string {
	return fmt.Sprintf("command terminated with non-zero exit code: %d", e.Code)
}

// Runtime runs what the streaming requests ask for. Each method returns
// when the process (or the forwarded connection) is done; ctx ends when
// the client went away.
type Runtime interface {
	// Exec runs cmd in container id with streams; a non-zero exit is an
	// *ExitError.
	Exec(ctx context.Context, id string, cmd []string, s Streams) error
	// Attach joins container id's main process's stdio.
	Attach(ctx context.Context, id string, s Streams) error
	// PortForward connects conn to port of pod sandbox id's network
	// namespace, until either side closes.
	PortForward(ctx context.Context, id string, port int32, conn io.ReadWriteCloser) error
}

// Server is the streaming server of one CRI. New starts it listening;
// Serve serves until Close.
type Server struct {
	rt   Runtime
	l    net.Listener
	srv  *http.Server
	base string

	mu      sync.Mutex
	pending map[string]pendingRequest
	now     func() time.Time
}

// pendingRequest is a CRI request waiting for its client to connect.
type pendingRequest struct {
	req     any // *runtime.ExecRequest, *runtime.AttachRequest or *runtime.PortForwardRequest
	expires time.Time
}

// New listens on addr (host:port, port 0 for any free one).
func New(addr string, rt Runtime) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("streaming server on %s: %w", addr, err)
	}
	s := &Server{rt: rt, l: l, base: "http://" + l.Addr().String(), pending: map[string]pendingRequest{}, now: time.Now}
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{token}", s.serveExec)
	mux.HandleFunc("/attach/{token}", s.serveAttach)
	mux.HandleFunc("/portforward/{token}", s.servePortForward)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.l.Addr().String() }

// Serve serves until Close; it returns nil then.
func (s *Server) Serve() error {
	err := s.srv.Serve(s.l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops listening and ends the connections, hijacked ones
// included (their sessions end when their runtime call does).
func (s *Server) Close() error {
	return s.srv.Close()
}

// GetExec checks req and returns its URL.
func (s *Server) GetExec(req *runtime.ExecRequest) (string, error) {
	if len(req.GetCmd()) == 0 {
		return "", fmt.Errorf("exec in container %q: no command: %w", req.GetContainerId(), errdefs.ErrInvalidArgument)
	}
	if err := checkStdio(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()); err != nil {
		return "", fmt.Errorf("exec in container %q: %w", req.GetContainerId(), err)
	}
	return s.store("exec", req)
}

// GetAttach checks req and returns its URL.
func (s *Server) GetAttach(req *runtime.AttachRequest) (string, error) {
	if err := checkStdio(req.GetStdin(), req.GetStdout(), req.GetStderr(), req.GetTty()); err != nil {
		return "", fmt.Errorf("attach to container %q: %w", req.GetContainerId(), err)
	}
	return s.store("attach", req)
}

// GetPortForward returns req's URL.
func (s *Server) GetPortForward(req *runtime.PortForwardRequest) (string, error) {
	return s.store("portforward", req)
}

func checkStdio(stdin, stdout, stderr, tty bool) error {
	if !stdin && !stdout && !stderr {
		return fmt.Errorf("one of stdin, stdout and stderr is needed: %w", errdefs.ErrInvalidArgument)
	}
	if tty && stderr {
		return fmt.Errorf("a terminal has no stderr of its own: tty and stderr cannot both be set: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// store keeps req under a new token and returns its URL.
func (s *Server) store(kind string, req any) (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for t, p := range s.pending {
		if now.After(p.expires) {
			delete(s.pending, t)
		}
	}
	s.pending[token] = pendingRequest{req: req, expires: now.Add(TokenTTL)}
	return s.base + "/" + kind + "/" + token, nil
}

// take removes and returns the request of token, nil when there is none
// or it expired.
func (s *Server) take(token string) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[token]
	if !ok {
		return nil
	}
	delete(s.pending, token)
	if s.now().After(p.expires) {
		return nil
	}
	return p.req
}

func (s *Server) serveExec(w http.ResponseWriter, r *http.Request) {
	req, ok := s.take(r.PathValue("token")).(*runtime.ExecRequest)
	if !ok {
		http.Error(w, "unknown or expired token", http.StatusNotFound)
		return
	}
	o := stdio{stdin: req.GetStdin(), stdout: req.GetStdout(), stderr: req.GetStderr(), tty: req.GetTty()}
	serveRemoteCommand(w, r, o, func(ctx context.Context, st Streams) error {
		return s.rt.Exec(ctx, req.GetContainerId(), req.GetCmd(), st)
	})
}

func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request) {
	req, ok := s.take(r.PathValue("token")).(*runtime.AttachRequest)
	if !ok {
		http.Error(w, "unknown or expired token", http.StatusNotFound)
		return
	}
	o := stdio{stdin: req.GetStdin(), stdout: req.GetStdout(), stderr: req.GetStderr(), tty: req.GetTty()}
	serveRemoteCommand(w, r, o, func(ctx context.Context, st Streams) error {
		return s.rt.Attach(ctx, req.GetContainerId(), st)
	})
}

func (s *Server) servePortForward(w http.ResponseWriter, r *http.Request) {
	req, ok := s.take(r.PathValue("token")).(*runtime.PortForwardRequest)
	if !ok {
		http.Error(w, "unknown or expired token", http.StatusNotFound)
		return
	}
	forward := func(ctx context.Context, port int32, conn io.ReadWriteCloser) error {
		return s.rt.PortForward(ctx, req.GetPodSandboxId(), port, conn)
	}
	servePortForward(w, r, req.GetPort(), forward)
}
