package main

import (
	"context"
	"io"
	"runtime"
	"runtime/debug"

	berthversion "github.com/berth-dev/berth/version"
	"github.com/spf13/cobra"
)

// version is berth's own version, shared with berthd (package version,
// revision set at link time by the Makefile).
var version = berthversion.Version + " (" + berthversion.Revision + ")"

type versionView struct {
	Client clientVersion  `json:"client"`
	Server *serverVersion `json:"server,omitempty"`
}

type clientVersion struct {
	Version   string `json:"version"`
	GoVersion string `json:"goVersion"`
}

type serverVersion struct {
	Version  string `json:"version"`
	Revision string `json:"revision"`
	UUID     string `json:"uuid"`
}

func newVersionCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the versions of berth and of the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.run(cmd.Context(), a.printVersion)
		},
	}
}

// printVersion prints the client's version even when the server cannot be asked.
func (a *app) printVersion(ctx context.Context, c *conn) error {
	v := versionView{Client: clientVersion{Version: clientVersionString(), GoVersion: runtime.Version()}}
	server, _, err := fetchServerInfo(ctx, c)
	if err == nil {
		v.Server = &serverVersion{Version: server.Version, Revision: server.Revision, UUID: server.UUID}
	}
	human := func(w io.Writer) error { return writeSections(w, versionSections(v)...) }
	if perr := a.out().print(v, human); perr != nil {
		return perr
	}
	return err
}

func versionSections(v versionView) []*section {
	client := &section{title: "Client"}
	client.add("Version", v.Client.Version)
	client.add("Go version", v.Client.GoVersion)
	if v.Server == nil {
		return []*section{client}
	}
	server := &section{title: "Server"}
	server.add("Version", v.Server.Version)
	server.add("Revision", dash(v.Server.Revision))
	server.add("UUID", dash(v.Server.UUID))
	return []*section{client, server}
}

func clientVersionString() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
