// Package bootstrap is the shim binary's side of the shim v2 launch
// protocol: how the daemon runs `berth-shim-runc-v2 start` and `delete`,
// and how the long-lived server process comes to exist.
//
// The daemon runs the binary in the bundle directory with flags -namespace,
// -id, -address (its gRPC socket), -publish-binary and, for delete, -bundle;
// with TTRPC_ADDRESS and GRPC_ADDRESS in the environment; and, for start,
// a payload on stdin. Up to containerd 2.2 that payload is the task's
// runtime options (a protobuf Any, possibly empty) and the shim answers
// with its socket address as plain text on stdout. From containerd 2.3 it
// is a BootstrapParams protobuf (containerd.runtime.bootstrap.v1) and the
// answer is a BootstrapResult protobuf. The two are told apart as containerd
// does: the payload is BootstrapParams only if it decodes as one and names
// the same id and namespace as the flags. The API module berth builds
// against (v1.10.0) predates those messages, so this package reads and
// writes their few fields with protowire.
//
// start creates the listening socket, starts the server (the same binary,
// without an action, in a new session) with the socket as file descriptor 3,
// writes the address into the bundle's `address` file and prints it.
package bootstrap

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// Environment variables the daemon sets for the shim.
const (
	EnvTTRPCAddress = "TTRPC_ADDRESS"
	EnvGRPCAddress  = "GRPC_ADDRESS"
	EnvNamespace    = "NAMESPACE"
)

// Flags are the command line of the shim binary.
type Flags struct {
	Namespace     string
	ID            string
	Address       string // the daemon's gRPC address
	PublishBinary string
	Bundle        string
	Socket        string
	Debug         bool
	Version       bool
	Info          bool
	// Action is "start", "delete", or empty for the server process.
	Action string
}

// ParseFlags reads the shim's command line (without the program name).
func ParseFlags(args []string) (Flags, error) {
	var f Flags
	fs := flag.NewFlagSet("berth-shim-runc-v2", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.Namespace, "namespace", "", "namespace that owns the shim")
	fs.StringVar(&f.ID, "id", "", "id of the task")
	fs.StringVar(&f.Address, "address", "", "gRPC address of the daemon")
	fs.StringVar(&f.PublishBinary, "publish-binary", "", "unused: events go to TTRPC_ADDRESS")
	fs.StringVar(&f.Bundle, "bundle", "", "bundle path, if not the working directory")
	fs.StringVar(&f.Socket, "socket", "", "unused: the server inherits its socket")
	fs.BoolVar(&f.Debug, "debug", false, "debug logging")
	fs.BoolVar(&f.Version, "v", false, "print the version")
	fs.BoolVar(&f.Version, "version", false, "print the version")
	fs.BoolVar(&f.Info, "info", false, "print runtime info")
	if err := fs.Parse(args); err != nil {
		return f, fmt.Errorf("shim flags: %w", err)
	}
	f.Action = fs.Arg(0)
	return f, nil
}

// Params is what the daemon tells a starting shim, from either form of the
// protocol.
type Params struct {
	InstanceID   string
	Namespace    string
	LogLevel     int32 // BootstrapParams.LogLevel: <= -4 is debug
	TTRPCAddress string
	GRPCAddress  string
	SocketDir    string
	// Options are the runtime options: BootstrapParams extensions, or the
	// legacy stdin Any. Type URLs tell them apart.
	Options []*anypb.Any
	// Legacy is set when the daemon used the pre-2.3 form and so expects the
	// address as plain text.
	Legacy bool
}

// ReadParams interprets the stdin payload of `start` against the flags and
// environment.
func ReadParams(payload []byte, f Flags, getenv func(string) string) (*Params, error) {
	if p, err := decodeParams(payload); err == nil && p.InstanceID == f.ID && p.Namespace == f.Namespace {
		return p, nil
	}
	p := &Params{
		InstanceID:   f.ID,
		Namespace:    f.Namespace,
		TTRPCAddress: getenv(EnvTTRPCAddress),
		GRPCAddress:  f.Address,
		Legacy:       true,
	}
	if f.Debug {
		p.LogLevel = -4
	}
	if len(payload) > 0 {
		var a anypb.Any
		if err := decodeAny(payload, &a); err != nil {
			return nil, fmt.Errorf("start: stdin is neither BootstrapParams for %s/%s nor runtime options: %w", f.Namespace, f.ID, err)
		}
		p.Options = []*anypb.Any{&a}
	}
	return p, nil
}

var errWire = errors.New("malformed protobuf")

// decodeParams reads containerd.runtime.bootstrap.v1.BootstrapParams.
func decodeParams(b []byte) (*Params, error) {
	p := &Params{}
	err := walk(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			p.InstanceID = string(v)
		case num == 2 && typ == protowire.BytesType:
			p.Namespace = string(v)
		case num == 3 && typ == protowire.VarintType:
			p.LogLevel = int32(n)
		case num == 5 && typ == protowire.BytesType:
			p.TTRPCAddress = string(v)
		case num == 6 && typ == protowire.BytesType:
			p.GRPCAddress = string(v)
		case num == 8 && typ == protowire.BytesType:
			return decodeExtension(v, p)
		case num == 9 && typ == protowire.BytesType:
			p.SocketDir = string(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// decodeExtension reads an Extension{Any value = 1}.
func decodeExtension(b []byte, p *Params) error {
	return walk(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != 1 || typ != protowire.BytesType {
			return nil
		}
		var a anypb.Any
		if err := decodeAny(v, &a); err != nil {
			return err
		}
		p.Options = append(p.Options, &a)
		return nil
	})
}

// decodeAny reads google.protobuf.Any strictly: only fields 1 and 2.
func decodeAny(b []byte, a *anypb.Any) error {
	return walk(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			a.TypeUrl = string(v)
		case num == 2 && typ == protowire.BytesType:
			a.Value = append([]byte(nil), v...)
		default:
			return fmt.Errorf("any: unexpected field %d: %w", num, errWire)
		}
		return nil
	})
}

// walk calls fn for each field of the message b: v holds a bytes field's
// contents, n a varint's value.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return fmt.Errorf("tag: %w", errWire)
		}
		b = b[l:]
		var (
			v []byte
			n uint64
		)
		switch typ {
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n, l = protowire.ConsumeVarint(b)
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return fmt.Errorf("field %d: %w", num, errWire)
		}
		b = b[l:]
		if err := fn(num, typ, v, n); err != nil {
			return err
		}
	}
	return nil
}

// EncodeResult returns containerd.runtime.bootstrap.v1.BootstrapResult
// {version, address, protocol: "ttrpc"}.
func EncodeResult(version int32, address string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(version))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, address)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, "ttrpc")
	return b
}

// Response is what `start` prints: the plain address for the legacy form,
// a BootstrapResult otherwise. The server serves task API v2 and v3 on the
// same socket; BootstrapResult says 3, as containerd 2.3's runc shim does.
func Response(p *Params, address string) []byte {
	if p.Legacy {
		return []byte(address)
	}
	return EncodeResult(3, address)
}
