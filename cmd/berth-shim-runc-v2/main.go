// Command berth-shim-runc-v2 is berth's shim: one process per task (or per
// pod, grouped by annotation) that serves the shim v2 task API over ttrpc
// and drives an OCI runtime binary: runc by default; crun through runc's
// BinaryName option; gVisor's runsc when the options are gVisor's
// (io.containerd.runsc.v1.options, with its runsc.toml), so that the same
// binary serves io.containerd.runsc.v1 handlers.
//
// The daemon runs it three ways, always in the task's bundle directory:
//
//	berth-shim-runc-v2 -namespace NS -id ID -address GRPC start
//	    starts the server (detached, in a new session), prints its socket
//	    address and exits;
//	berth-shim-runc-v2 -namespace NS -id ID -address GRPC -bundle DIR delete
//	    cleans up after a shim that died and prints a DeleteResponse;
//	berth-shim-runc-v2 -namespace NS -id ID -address GRPC
//	    is the server itself, as start launches it, with its listening
//	    socket on file descriptor 3.
//
// See package runtime/shim/bootstrap for the launch protocol and
// runtime/shim for the task service.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/shim/bootstrap"
	"github.com/berth-dev/berth/version"
	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
)

const name = "berth-shim-runc-v2"

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

func run(args []string) error {
	f, err := bootstrap.ParseFlags(args)
	if err != nil {
		return err
	}
	if f.Version {
		fmt.Printf("%s:\n  Version:  %s\n  Revision: %s\n", name, version.Version, version.Revision)
		return nil
	}
	if f.Info {
		return fmt.Errorf("-info: %w", errdefs.ErrNotImplemented)
	}
	if f.Namespace == "" {
		return errors.New("-namespace is required")
	}
	if f.ID == "" && f.Action != "" {
		return fmt.Errorf("%s: -id is required", f.Action)
	}
	switch f.Action {
	case "start":
		return start(f)
	case "delete":
		return deleteTask(f)
	case "":
		return serve(f)
	default:
		return fmt.Errorf("unknown action %q", f.Action)
	}
}

// start launches the server for the task, or finds the one already
// serving its group, and prints its address.
func start(f bootstrap.Flags) error {
	payload, err := io.ReadAll(io.LimitReader(os.Stdin, 10<<20))
	if err != nil {
		return fmt.Errorf("start: read stdin: %w", err)
	}
	p, err := bootstrap.ReadParams(payload, f, os.Getenv)
	if err != nil {
		return err
	}
	bundle, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("start: bundle: %w", err)
	}
	address := bootstrap.SocketAddress(bootstrap.SocketDir(p), p.GRPCAddress, p.Namespace, group(bundle, p.InstanceID))
	l, err := bootstrap.Listen(address)
	if errdefs.IsAlreadyExists(err) {
		return answer(bundle, p, address)
	}
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer l.Close()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	pid, err := bootstrap.Launch(self, bundle, p, l)
	if err == nil {
		err = joinShimCgroup(p, pid)
	}
	if err == nil {
		err = bootstrap.WritePid(bundle, pid)
	}
	if err != nil {
		_ = bootstrap.RemoveSocket(address)
		return fmt.Errorf("start: %w", err)
	}
	return answer(bundle, p, address)
}

// answer records the address in the bundle and prints it.
func answer(bundle string, p *bootstrap.Params, address string) error {
	if err := bootstrap.WriteAddress(bundle, address); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	_, err := os.Stdout.Write(bootstrap.Response(p, address))
	return err
}

// deleteTask is the `delete` subcommand.
func deleteTask(f bootstrap.Flags) error {
	bundle := f.Bundle
	if bundle == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("delete: bundle: %w", err)
		}
		bundle = wd
	}
	resp, err := shim.Cleanup(context.Background(), shim.DefaultRuncRoot, f.Namespace, f.ID, bundle)
	if err != nil {
		return err
	}
	// The socket of a shim that died; a grouped shim still serving others
	// answers and keeps it.
	if address, err := os.ReadFile(filepath.Join(bundle, "address")); err == nil {
		addr := strings.TrimSpace(string(address))
		if conn, err := net.Dial("unix", strings.TrimPrefix(addr, "unix://")); err == nil {
			conn.Close()
		} else {
			_ = bootstrap.RemoveSocket(addr)
		}
	}
	data, err := proto.Marshal(resp)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	_, err = os.Stdout.Write(data)
	return err
}
