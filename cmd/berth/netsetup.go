package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/network"
	"github.com/berth-dev/berth/oci"
)

// networkConfig is the CNI configuration of the CLI: berth's defaults,
// with the state under the data root.
func (o *containerOptions) networkConfig() (network.Config, error) {
	root, err := filepath.Abs(o.dataRoot)
	if err != nil {
		return network.Config{}, fmt.Errorf("--data-root %q: %w", o.dataRoot, err)
	}
	return network.Config{StateDir: filepath.Join(root, "networks")}.WithDefaults(), nil
}

// networkOpts are the spec options of run's --network: the host's network
// namespace; or a namespace of the container's own, which the OCI hooks
// attach to the default CNI network (bridge) or not (none), with
// hostname, hosts and, for bridge, resolv.conf files bound from the
// container's directory.
func networkOpts(o *containerOptions, r *newRun) ([]oci.SpecOpt, error) {
	annotations := map[string]string{network.AnnotationNamespace: r.ns, network.AnnotationNetwork: r.ro.network}
	hostname := r.ro.hostname
	if r.ro.network == networkHost {
		if hostname == "" {
			hostname, _ = os.Hostname()
		}
		return []oci.SpecOpt{oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostname(hostname),
			oci.WithAnnotations(annotations)}, nil
	}
	if hostname == "" {
		hostname = r.id[:shortIDLength]
	}
	mounts, err := writeNetworkFiles(r, hostname)
	if err != nil {
		return nil, err
	}
	opts := []oci.SpecOpt{oci.WithHostname(hostname), oci.WithMounts(mounts...)}
	if r.ro.network == networkBridge {
		hooks, err := bridgeHooks(o)
		if err != nil {
			return nil, err
		}
		ports, err := json.Marshal(r.plan.ports)
		if err != nil {
			return nil, err
		}
		annotations[network.AnnotationPorts] = string(ports)
		opts = append(opts, oci.WithHooks(hooks))
	}
	return append(opts, oci.WithAnnotations(annotations)), nil
}

// bridgeHooks makes sure the default network exists and returns the hooks
// that attach a container to it: this berth binary's internal oci-hook.
func bridgeHooks(o *containerOptions) (*specs.Hooks, error) {
	cfg, err := o.networkConfig()
	if err != nil {
		return nil, err
	}
	m, err := network.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.EnsureDefault(); err != nil {
		return nil, fmt.Errorf("bridge network: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("path of the berth binary, for the network hooks: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return nil, fmt.Errorf("path of the berth binary, for the network hooks: %w", err)
	}
	return network.Hooks(exe, cfg), nil
}

// writeNetworkFiles writes the container's /etc/hostname, /etc/hosts and,
// on the bridge network, /etc/resolv.conf, and returns their bind mounts.
func writeNetworkFiles(r *newRun, hostname string) ([]specs.Mount, error) {
	files := map[string][]byte{
		"/etc/hostname": []byte(hostname + "\n"),
		"/etc/hosts": fmt.Appendf(nil, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n",
			hostname),
	}
	if r.ro.network == networkBridge {
		resolv, err := network.ResolvConf()
		if err != nil {
			return nil, err
		}
		files["/etc/resolv.conf"] = resolv
	}
	var mounts []specs.Mount
	for _, dst := range []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"} {
		b, ok := files[dst]
		if !ok {
			continue
		}
		src := filepath.Join(r.dir, filepath.Base(dst))
		if err := os.WriteFile(src, b, 0o644); err != nil {
			return nil, fmt.Errorf("write the container's %s: %w", dst, err)
		}
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rprivate"}})
	}
	return mounts, nil
}

// containerNetwork returns the network manager of a bridge container: the
// configuration its hooks were given, else the CLI's. nil: the container
// is not on the bridge network.
func containerNetwork(o *containerOptions, rec *containersapi.Container) (*network.Manager, error) {
	if rec.GetLabels()[labelNetwork] != networkBridge {
		return nil, nil
	}
	cfg, err := o.networkConfig()
	if err != nil {
		return nil, err
	}
	if spec, err := specOf(rec); err == nil && spec.Hooks != nil && len(spec.Hooks.Poststop) > 0 {
		cfg = hookConfig(spec.Hooks.Poststop[0].Args, cfg)
	}
	return network.New(cfg)
}

// hookConfig reads the network configuration from an oci-hook's args.
func hookConfig(args []string, cfg network.Config) network.Config {
	for _, arg := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(arg, "--"), "=")
		switch {
		case !ok:
		case name == network.FlagConfDir:
			cfg.ConfDir = value
		case name == network.FlagBinDir:
			cfg.BinDirs = strings.Split(value, ",")
		case name == network.FlagStateDir:
			cfg.StateDir = value
		}
	}
	return cfg
}

// teardownNetwork detaches a bridge container, in case its postStop hook
// never ran; a detached one is left as it is.
func teardownNetwork(ctx context.Context, a *app, o *containerOptions, rec *containersapi.Container) error {
	m, err := containerNetwork(o, rec)
	if err != nil || m == nil {
		return err
	}
	if err := m.Teardown(ctx, a.opts.namespace, rec.GetID()); err != nil {
		return fmt.Errorf("network of container %s: %w", describe(rec), err)
	}
	return nil
}

// networkStatus is a bridge container's CNI result, nil when it has none.
func networkStatus(_ context.Context, a *app, o *containerOptions, rec *containersapi.Container) (*network.Result, error) {
	m, err := containerNetwork(o, rec)
	if err != nil || m == nil {
		return nil, err
	}
	res, err := m.Status(a.opts.namespace, rec.GetID())
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	return res, err
}

// newInternalCommand holds what berth runs itself: the OCI hooks of the
// bridge network, which runc calls with the container's state on stdin.
func newInternalCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "internal", Hidden: true, Short: "Commands berth runs itself"}
	var cfg network.Config
	var binDirs string
	hook := &cobra.Command{
		Use:   "oci-hook PHASE",
		Short: "Attach (createRuntime) or detach (postStop) a container's network",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if binDirs != "" {
				cfg.BinDirs = strings.Split(binDirs, ",")
			}
			return network.RunHook(cmd.Context(), cfg, args[0], cmd.InOrStdin())
		},
	}
	f := hook.Flags()
	f.StringVar(&cfg.ConfDir, network.FlagConfDir, "", "CNI configuration directory")
	f.StringVar(&binDirs, network.FlagBinDir, "", "CNI plugin directories, comma-separated")
	f.StringVar(&cfg.StateDir, network.FlagStateDir, "", "CNI state directory")
	cmd.AddCommand(hook)
	return cmd
}
