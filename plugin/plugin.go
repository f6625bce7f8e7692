// Package plugin is berth's subsystem registry. Every subsystem (content,
// metadata, gc, events, each gRPC service) is a Registration with a type,
// an ID, the types it requires and an init function. The daemon initializes
// them in order; a plugin whose init fails is kept with its error, so the
// introspection service shows it as "error" with the reason, and plugins
// that require it fail with an error naming it.
//
// Lifecycle: Registration → Init (once, in the order given) → Plugin with
// an Instance or an Err. Instances are looked up by type (and ID) by the
// plugins initialized after them.
package plugin

import (
	"context"
	"errors"
	"fmt"
)

// Type is a plugin type, as containerd names them.
type Type string

// Plugin types.
const (
	ContentPlugin  Type = "io.containerd.content.v1"
	SnapshotPlugin Type = "io.containerd.snapshotter.v1"
	DiffPlugin     Type = "io.containerd.differ.v1"
	TransferPlugin Type = "io.containerd.transfer.v1"
	MetadataPlugin Type = "io.containerd.metadata.v1"
	GCPlugin       Type = "io.containerd.gc.v1"
	EventPlugin    Type = "io.containerd.event.v1"
	LeasePlugin    Type = "io.containerd.lease.v1"
	ServicePlugin  Type = "io.containerd.service.v1"
	GRPCPlugin     Type = "io.containerd.grpc.v1"
	TTRPCPlugin    Type = "io.containerd.ttrpc.v1"
	InternalPlugin Type = "io.containerd.internal.v1"
)

// ErrSkip is returned by an init function to leave a plugin out silently.
var ErrSkip = errors.New("skip plugin")

// Registration describes one plugin.
type Registration struct {
	Type     Type
	ID       string
	Requires []Type
	// Config returns a pointer to the plugin's default configuration,
	// decoded from [plugins."<Type>.<ID>"] before InitFn runs; nil if the
	// plugin takes none.
	Config func() any
	InitFn func(ctx context.Context, ic *InitContext) (any, error)
}

// URI is the plugin's full name, "<type>.<id>".
func (r *Registration) URI() string { return string(r.Type) + "." + r.ID }

// InitContext is what an init function gets.
type InitContext struct {
	// Root and State are the plugin's own directories under the daemon's.
	Root, State string
	Config      any
	// Exports are shown by introspection; Platforms and Capabilities too.
	Exports      map[string]string
	Platforms    []string
	Capabilities []string

	set *Set
}

// Get returns the instance of the first initialized plugin of type t.
func (ic *InitContext) Get(t Type) (any, error) { return ic.set.Get(t) }

// GetByID returns the instance of plugin t.id.
func (ic *InitContext) GetByID(t Type, id string) (any, error) { return ic.set.GetByID(t, id) }

// GetAll returns the initialized plugins of type t, by ID.
func (ic *InitContext) GetAll(t Type) map[string]any { return ic.set.GetAll(t) }

// Plugin is an initialized (or failed) plugin.
type Plugin struct {
	Registration *Registration
	Instance     any
	Err          error
	Exports      map[string]string
	Platforms    []string
	Capabilities []string
}

// Set is the ordered list of plugins of a daemon.
type Set struct {
	ordered []*Plugin
}

// Plugins returns every plugin in initialization order.
func (s *Set) Plugins() []*Plugin { return s.ordered }

// Get returns the first working plugin instance of type t.
func (s *Set) Get(t Type) (any, error) {
	for _, p := range s.ordered {
		if p.Registration.Type == t {
			if p.Err != nil {
				return nil, fmt.Errorf("plugin %s failed: %w", p.Registration.URI(), p.Err)
			}
			return p.Instance, nil
		}
	}
	return nil, fmt.Errorf("no plugin of type %s", t)
}

// GetByID returns the instance of plugin t.id.
func (s *Set) GetByID(t Type, id string) (any, error) {
	for _, p := range s.ordered {
		if p.Registration.Type == t && p.Registration.ID == id {
			if p.Err != nil {
				return nil, fmt.Errorf("plugin %s failed: %w", p.Registration.URI(), p.Err)
			}
			return p.Instance, nil
		}
	}
	return nil, fmt.Errorf("no plugin %s.%s", t, id)
}

// GetAll returns the working plugins of type t by ID.
func (s *Set) GetAll(t Type) map[string]any {
	out := map[string]any{}
	for _, p := range s.ordered {
		if p.Registration.Type == t && p.Err == nil {
			out[p.Registration.ID] = p.Instance
		}
	}
	return out
}

// Add initializes r and appends it to the set. The returned Plugin carries
// the error if init failed; Add never stops the daemon by itself.
func (s *Set) Add(ctx context.Context, r *Registration, ic *InitContext) *Plugin {
	ic.set = s
	if ic.Exports == nil {
		ic.Exports = map[string]string{}
	}
	p := &Plugin{Registration: r}
	p.Instance, p.Err = r.InitFn(ctx, ic)
	if errors.Is(p.Err, ErrSkip) {
		return p
	}
	p.Exports, p.Platforms, p.Capabilities = ic.Exports, ic.Platforms, ic.Capabilities
	s.ordered = append(s.ordered, p)
	return p
}
