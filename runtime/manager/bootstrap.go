package manager

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// runtimeFile records, in the bundle, the runtime type and handler name a
// task was created with, so a restarted berthd reports them too.
const runtimeFile = "runtime"

// writeRecord keeps the shim binary and runtime of the task in its bundle.
func (t *Task) writeRecord() error {
	if err := os.WriteFile(filepath.Join(t.Bundle, binaryFile), []byte(t.binary), 0o600); err != nil {
		return fmt.Errorf("record shim binary: %w", err)
	}
	if err := os.WriteFile(filepath.Join(t.Bundle, runtimeFile), []byte(t.RuntimeType+"\n"+t.Handler+"\n"), 0o600); err != nil {
		return fmt.Errorf("record runtime: %w", err)
	}
	return nil
}

// readRecord reads what writeRecord wrote; bundles of older berthds have
// no runtime file.
func (t *Task) readRecord() error {
	binary, err := os.ReadFile(filepath.Join(t.Bundle, binaryFile))
	if err != nil {
		return err
	}
	t.binary = string(binary)
	if rt, err := os.ReadFile(filepath.Join(t.Bundle, runtimeFile)); err == nil {
		t.RuntimeType, t.Handler, _ = strings.Cut(strings.TrimSpace(string(rt)), "\n")
	}
	return nil
}

// encodeParams builds containerd.runtime.bootstrap.v1.BootstrapParams
// {instance_id 1, namespace 2, ttrpc_address 5, grpc_address 6,
// extensions 8 (Extension{Any value 1})}. The API module berth builds
// against predates the message, so it is written field by field.
func encodeParams(t *Task, cfg Config, opts *anypb.Any) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, t.ID)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, t.Namespace)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendString(b, cfg.TTRPCAddress)
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	b = protowire.AppendString(b, cfg.GRPCAddress)
	if opts != nil {
		var a []byte
		a = protowire.AppendTag(a, 1, protowire.BytesType)
		a = protowire.AppendString(a, opts.GetTypeUrl())
		a = protowire.AppendTag(a, 2, protowire.BytesType)
		a = protowire.AppendBytes(a, opts.GetValue())
		var ext []byte
		ext = protowire.AppendTag(ext, 1, protowire.BytesType)
		ext = protowire.AppendBytes(ext, a)
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, ext)
	}
	return b
}

var errResult = errors.New("malformed BootstrapResult")

// decodeResult reads BootstrapResult {version 1, address 2, protocol 3}
// and returns the address; berth speaks ttrpc only.
func decodeResult(b []byte) (string, error) {
	var address, protocol string
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", errResult
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return "", errResult
		}
		b = b[n:]
		switch num {
		case 2:
			address = string(v)
		case 3:
			protocol = string(v)
		}
	}
	if !strings.HasPrefix(address, "unix://") {
		return "", fmt.Errorf("address %q: %w", address, errResult)
	}
	if protocol != "" && protocol != "ttrpc" {
		return "", fmt.Errorf("protocol %q: berth speaks ttrpc to shims: %w", protocol, errResult)
	}
	return address, nil
}
